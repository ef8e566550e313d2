// Private endpoints for one resource, one per sub-resource (group id), each registered in the
// private DNS zone of its group (network.bicep), so the resource's public name resolves to the
// endpoint inside the VNet. Used for the storage account (blob, queue, table) and the function app (sites).

param location string
param tags object

@description('Name of the resource the endpoints lead to; endpoint names derive from it.')
param serviceName string

@description('Resource id of the resource the endpoints lead to.')
param serviceId string

@description('Its sub-resources to reach privately, e.g. blob, queue, table or sites.')
param groupIds array

@description('Subnet of the endpoints.')
param subnetId string

@description('Private DNS zone id per group id (network.bicep output privateDnsZoneIds).')
param privateDnsZoneIds object

resource endpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [
  for groupId in groupIds: {
    name: 'pe-${serviceName}-${groupId}'
    location: location
    tags: tags
    properties: {
      subnet: {
        id: subnetId
      }
      privateLinkServiceConnections: [
        {
          name: '${serviceName}-${groupId}'
          properties: {
            privateLinkServiceId: serviceId
            groupIds: [
              groupId
            ]
          }
        }
      ]
    }
  }
]

resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [
  for (groupId, i) in groupIds: {
    parent: endpoints[i]
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: groupId
          properties: {
            privateDnsZoneId: privateDnsZoneIds[groupId]
          }
        }
      ]
    }
  }
]

