// Grants a Microsoft Graph application permission (app role) to a managed identity.
//
// Uses the Microsoft Graph Bicep extension (bicepconfig.json: microsoftGraphV1, Bicep >= 0.36.1).
// Limits: public cloud only; not supported by deployment stacks; the DEPLOYING principal needs the
// Graph permissions AppRoleAssignment.ReadWrite.All and Application.Read.All (in practice a
// Privileged Role Administrator or an admin-consented workload identity). Without them, deploy with
// grantGraphAppRole=false and have an admin run infra/scripts/grant-graph-app-role.sh.
// Removing this module from a later deployment does not revoke the assignment.

extension microsoftGraphV1

@description('Object id of the managed identity\'s service principal.')
param principalId string

@description('The Graph application permission to grant.')
param appRoleValue string = 'DeviceManagementConfiguration.ReadWrite.All'

// Microsoft Graph's well-known application id.
resource graphServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

resource appRoleAssignment 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: graphServicePrincipal.id
  appRoleId: filter(graphServicePrincipal.appRoles, role => role.value == appRoleValue)[0].id
}

output appRoleId string = appRoleAssignment.appRoleId
