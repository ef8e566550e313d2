// The multi-tenant app registration through which the function writes to customer tenants (docs/tenants.md).
//
// Secretless: the app has no client secret and no certificate. Its only credential is a federated
// identity credential that trusts the function's user-assigned managed identity ("application trusts a
// managed identity"): the function presents a managed-identity token for the token-exchange audience as
// its client assertion. The app requests the Graph application permission it needs; each customer's
// admin grants it in their own tenant (admin consent), which creates the app's service principal there.
//
// Microsoft Graph Bicep extension (bicepconfig.json: microsoftGraphV1): public cloud only; the deploying
// principal needs Application.ReadWrite.OwnedBy (or Application.ReadWrite.All) and Application.Read.All.

extension microsoftGraphV1

@description('Immutable unique name of the app registration (the Graph extension\'s key for it).')
param uniqueName string

@description('Display name customers\' admins see on the consent screen.')
param displayName string

@description('Object (principal) id of the user-assigned managed identity the app trusts.')
param identityPrincipalId string

@description('The token-exchange audience of this Entra ID cloud (api://AzureADTokenExchange in the public cloud).')
param tokenExchangeAudience string = 'api://AzureADTokenExchange'

@description('The Graph application permission the app requests.')
param appRoleValue string = 'DeviceManagementConfiguration.ReadWrite.All'

// Microsoft Graph's well-known application id.
resource graphServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMultipleOrgs'
  requiredResourceAccess: [
    {
      resourceAppId: '00000003-0000-0000-c000-000000000000'
      resourceAccess: [
        {
          id: filter(graphServicePrincipal.appRoles, role => role.value == appRoleValue)[0].id
          type: 'Role'
        }
      ]
    }
  ]
}

// Graph child resources are keyed '<parent uniqueName>/<name>', which also orders them after the app.
resource functionIdentityCredential 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = {
  name: '${app.uniqueName}/certstate-function-identity'
  description: 'The certstate function\'s user-assigned managed identity presents its token as this app\'s client assertion.'
  issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
  subject: identityPrincipalId
  audiences: [
    tokenExchangeAudience
  ]
}

output appId string = app.appId
output federatedCredentialSubject string = functionIdentityCredential.subject
