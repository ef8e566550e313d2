// The private network (main.bicep publicNetworkAccess=Disabled): a VNet with a subnet for Flex VNet
// integration (the function's outbound traffic) and one for private endpoints, and the private DNS
// zones that make the storage account's and the app's public names resolve to those endpoints
// inside the VNet. The endpoints themselves come from privateendpoints.bicep.

param name string
param location string
param tags object

@description('Address space of the VNet.')
param addressPrefix string

@description('Subnet for Flex VNet integration, delegated to Microsoft.App/environments: one address per instance.')
param functionSubnetPrefix string

@description('Subnet for the private endpoints (storage blob, queue, table and the function app).')
param privateEndpointSubnetPrefix string

var functionSubnetName = 'functions'
var privateEndpointSubnetName = 'private-endpoints'

// Private Link zone names per service; the app's differs per cloud.
var sitesPrivateDnsZones = {
  AzureCloud: 'privatelink.azurewebsites.net'
  AzureUSGovernment: 'privatelink.azurewebsites.us'
  AzureChinaCloud: 'privatelink.chinacloudsites.cn'
}
var privateDnsZones = [
  {
    groupId: 'blob'
    zone: 'privatelink.blob.${environment().suffixes.storage}'
  }
  {
    groupId: 'queue'
    zone: 'privatelink.queue.${environment().suffixes.storage}'
  }
  {
    groupId: 'table'
    zone: 'privatelink.table.${environment().suffixes.storage}'
  }
  {
    groupId: 'sites'
    zone: sitesPrivateDnsZones[environment().name]
  }
]

// No rules of its own: the default rules allow traffic within the VNet and deny inbound from the internet.
resource functionSubnetNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${name}-${functionSubnetName}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource privateEndpointSubnetNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${name}-${privateEndpointSubnetName}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: functionSubnetName
        properties: {
          addressPrefix: functionSubnetPrefix
          // The function calls Graph and Entra ID on the internet. Explicit, because newer network API
          // versions make subnets private by default; a NAT gateway here gives a fixed egress address.
          defaultOutboundAccess: true
          networkSecurityGroup: {
            id: functionSubnetNsg.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: privateEndpointSubnetNsg.id
          }
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [
  for zone in privateDnsZones: {
    name: zone.zone
    location: 'global'
    tags: tags
  }
]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [
  for (zone, i) in privateDnsZones: {
    parent: zones[i]
    name: '${name}-link'
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: vnet.id
      }
    }
  }
]

output id string = vnet.id
output functionSubnetId string = '${vnet.id}/subnets/${functionSubnetName}'
output privateEndpointSubnetId string = '${vnet.id}/subnets/${privateEndpointSubnetName}'
// Zone id per group id, for privateendpoints.bicep; zones[i] is privateDnsZones[i] (tests/infra checks the order).
output privateDnsZoneIds object = {
  blob: zones[0].id
  queue: zones[1].id
  table: zones[2].id
  sites: zones[3].id
}
