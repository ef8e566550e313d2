// certstate: a queue-triggered Python function (Flex Consumption) that PATCHes Intune
// managedDeviceCertificateState through Microsoft Graph, with an optional Logic App front door.
//
// Resource-group scope: `azd up` (azure.yaml) or
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
// See docs/deploy.md for parameters, roles and the pacing arithmetic.
//
// Every identity is Entra ID based: the storage account refuses shared keys, Application Insights
// refuses instrumentation-key ingestion, and no output carries a key, SAS or connection string.

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(40)
@description('Environment name (azd sets it from AZURE_ENV_NAME). Used in resource names and the azd-env-name tag.')
param environmentName string

@description('Region for every resource. Flex Consumption must be available there (az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Tags added to every resource.')
param tags object = {}

@allowed([
  'global'
  'usgov'
  'usgovdod'
  'china'
])
@description('Microsoft Graph national cloud; sets GRAPH_BASE_URL. It must match the Azure cloud this is deployed to.')
param graphCloud string = 'global'

@minLength(3)
@maxLength(56)
@description('Input queue (the trigger). At most 56 characters, so that <name>-poison is still a valid queue name.')
param inputQueueName string = 'certificate-state-updates'

@minLength(3)
@maxLength(56)
@description('Result queue: one outcome per input message.')
param resultQueueName string = 'certificate-state-results'

@minValue(2)
@maxValue(10000)
@description('Graph write limit for this app in this tenant, per GRAPH_WRITE_WINDOW_SECONDS (Intune: 100 per 20 s).')
param graphWriteLimit int = 100

@minValue(1)
@maxValue(3600)
@description('The window of graphWriteLimit, in seconds.')
param graphWriteWindowSeconds int = 20

@minValue(0)
@maxValue(9998)
@description('Writes per window left to other tools that write to Intune as the same app (0: certstate may use the whole limit).')
param graphWriteReserve int = 0

@minValue(1)
@maxValue(1000)
@description('Flex maximumInstanceCount (per function group; this app has one). Size it from what one instance processes, see docs/deploy.md ("Pacing" and "Capacity"); pacing does not limit it.')
param maximumInstanceCount int = 2

@allowed([
  512
  2048
  4096
])
@description('Flex instance memory in MB.')
param instanceMemoryMB int = 2048

@minValue(0)
@maxValue(1000)
@description('Always-ready instances of the queue trigger (0: none, a message after idle waits for a cold start; each one is billed all the time, see docs/deploy.md "Cold start").')
param alwaysReadyInstances int = 0

// Only versions the code runs on: pyproject.toml requires-python, each one tested by CI's matrix
// (tests/infra and tests/layout check they agree); the default is the newest.
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
@description('Python version of the Flex runtime: 3.11 to 3.13, each tested by CI; 3.13 uses azure-functions 2.x.')
param pythonVersion string = '3.13'

@minValue(1)
@maxValue(60)
@description('GRAPH_CONNECT_TIMEOUT_SECONDS.')
param graphConnectTimeoutSeconds int = 5

@minValue(1)
@maxValue(300)
@description('GRAPH_READ_TIMEOUT_SECONDS.')
param graphReadTimeoutSeconds int = 30

@minValue(1)
@maxValue(20)
@description('GRAPH_MAX_ATTEMPTS: calls per message delivery, retries included.')
param graphMaxAttempts int = 4

@minValue(0)
@maxValue(540)
@description('GRAPH_MAX_WAIT_SECONDS: the longest Retry-After or backoff one delivery sleeps through.')
param graphMaxWaitSeconds int = 60

@description('Customer tenants (GUIDs) served through the multi-tenant app, besides the tenant of this deployment. Empty: only this tenant, and no app registration is made. See docs/tenants.md.')
param servedTenantIds array = []

@description('Serve customer tenants from the tenant registry (certstate tenants add, docs/tenants.md): creates the multi-tenant app and doubles the queue concurrency even with servedTenantIds empty.')
param multiTenant bool = false

@description('Client id of an existing multi-tenant app registration whose federated credential trusts the function identity (where the Graph Bicep extension is not available). Empty: this template creates the app when servedTenantIds is not empty.')
param multiTenantAppClientId string = ''

@description('Per-tenant writes per window left to other tools writing as the same app, e.g. {\'<tenant GUID>\': 50}; "home" names this deployment\'s tenant. The tenant\'s budget follows the same rule as graphWriteReserve.')
param graphTenantWriteReserves object = {}

@minValue(0)
@maxValue(60)
@description('GRAPH_SLOT_WAIT_SECONDS: how long a message waits for its tenant\'s next write slot before it is deferred (put back on the queue), when servedTenantIds is not empty.')
param graphSlotWaitSeconds int = 2

@description('Grant the Graph application permission DeviceManagementConfiguration.ReadWrite.All to the function identity (Graph Bicep extension; public cloud only; the deployer needs AppRoleAssignment.ReadWrite.All and Application.Read.All). If false, run infra/scripts/grant-graph-app-role.sh or ask an admin.')
param grantGraphAppRole bool = true

@description('Deploy the Logic App (Consumption) HTTP front door that puts request bodies on the input queue. Not deployed when publicNetworkAccess is Disabled.')
param deployLogicApp bool = true

// The front door's callers (docs/deploy.md, "The front door"): Entra ID tokens only, at most five
// callers in all (Logic Apps' limit of authorization policies).
@maxLength(5)
@description('Object ids (oid claim) of the service principals, managed identities or users allowed to call the front door. Empty (with frontDoorCallerAppIds): nobody can.')
param frontDoorCallerObjectIds array = []

@maxLength(5)
@description('Application (client) ids allowed to call the front door (appid claim of v1 tokens, azp of v2 tokens).')
param frontDoorCallerAppIds array = []

@description('Issuer (iss) every caller\'s token must carry. Default: v1 tokens of this tenant; https://login.microsoftonline.com/<tenant>/v2.0 for v2 tokens.')
param frontDoorTokenIssuer string = 'https://sts.windows.net/${tenant().tenantId}/'

@description('Audience (aud) every caller\'s token must carry: the resource the caller requests its token for. Default: Azure Resource Manager; a dedicated app registration is better (docs/deploy.md).')
param frontDoorTokenAudience string = environment().resourceManager

@description('Optional IP ranges the front door accepts calls from (x.x.x.x/n or x.x.x.x-y.y.y.y). Empty: any address; the token still decides.')
param frontDoorAllowedCallerIpRanges array = []

@description('Optional object id of an operator (azd sets AZURE_PRINCIPAL_ID) who may put messages on the input queue and read and delete results, for the smoke test in docs/deploy.md. Empty: no operator roles.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Principal type of operatorPrincipalId.')
param operatorPrincipalType string = 'User'

@minValue(30)
@maxValue(730)
@description('Log Analytics retention in days.')
param logRetentionDays int = 30

@minValue(1)
@maxValue(3650)
@description('AUDIT_RETENTION_DAYS: days the audit table keeps each outcome (a daily timer purges older days).')
param auditRetentionDays int = 400

@description('E-mail address for the alerts (docs/operations.md). Empty: the alert rules fire without mailing anyone.')
param alertEmail string = ''

@minValue(0)
@description('Failed outcomes in 15 minutes above which the failed-outcomes alert fires (0: any).')
param failedOutcomesThreshold int = 0

@minValue(5)
@maxValue(55)
@description('The backlog alert fires when the input queue grows and holds more than the write limit drains in this many minutes.')
param backlogMinutes int = 30

@minValue(0)
@maxValue(100)
@description('Percentage of message traces (spans) kept (OTEL_TRACES_SAMPLER_ARG); 100 keeps every span. Outcome metrics, warning and error lines and the audit trail are never sampled, and the workbook and alerts read metrics only (docs/operations.md, "Sampling").')
param traceSamplingPercent int = 10

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
@description('Storage replication. The queues hold transient work; LRS is enough for most, ZRS survives a zone loss.')
param storageSkuName string = 'Standard_LRS'

@description('Zone-redundant Flex plan. Only in regions where Flex supports availability zones.')
param zoneRedundant bool = false

// Private networking (docs/deploy.md, "Public or private network access").
@allowed([
  'Enabled'
  'Disabled'
])
@description('Public network access to the storage account and the function app. Disabled: a VNet with private endpoints (blob, queue, table, the app) and private DNS zones, Flex VNet integration for all outbound traffic, and no Logic App front door.')
param publicNetworkAccess string = 'Enabled'

@description('Address space of the VNet (publicNetworkAccess Disabled only).')
param virtualNetworkAddressPrefix string = '10.90.0.0/16'

@description('Subnet for Flex VNet integration, inside virtualNetworkAddressPrefix.')
param functionSubnetPrefix string = '10.90.0.0/24'

@description('Subnet for the private endpoints, inside virtualNetworkAddressPrefix.')
param privateEndpointSubnetPrefix string = '10.90.1.0/24'

var resourceToken = toLower(uniqueString(resourceGroup().id, environmentName, location))
var namePrefix = toLower(take(environmentName, 20))
var allTags = union(tags, {
  'azd-env-name': environmentName
  application: 'certstate'
})

var graphBaseUrls = {
  global: 'https://graph.microsoft.com/beta'
  usgov: 'https://graph.microsoft.us/beta'
  usgovdod: 'https://dod-graph.microsoft.us/beta'
  china: 'https://microsoftgraph.chinacloudapi.cn/beta'
}

// Pacing (docs/deploy.md, "Pacing"; docs/design.md, "Pacing across instances"). GRAPH_WRITE_BUDGET is a
// tenant's writes per window for the whole deployment: every instance draws its slots from one schedule per
// tenant in the pacing table, so the instances together never pass it. One write of the available limit is
// kept back for send jitter and clock skew between instances. Without the table (it fails, or is slow) an
// instance falls back to (budget + 1) / GRAPH_PACING_MAX_INSTANCES - 1 writes per window (a fraction: a write
// every few windows), which no number of unsynchronised instances can push past the limit; from budget + 1
// instances on no share is left and an instance without the table defers the tenant's writes until it answers.
// Pacing does not limit the instance count.
var availableWriteLimit = max(2, graphWriteLimit - graphWriteReserve)
var graphWriteBudget = availableWriteLimit - 1
// The same rule per tenant with that tenant's reserve (at least 1 write per window).
var graphTenantWriteBudgetItems = [
  for r in items(graphTenantWriteReserves): '${r.key}=${max(2, graphWriteLimit - r.value) - 1}'
]
// The Python worker runs a sync function on PYTHON_THREADPOOL_THREAD_COUNT threads (default min(32,
// cores + 4): five on a one-core instance). Every invocation the host starts may wait for its tenant's write
// slot, so each gets its own thread: batchSize + newBatchThreshold.
var workerThreadCount = queueBatchSize + queueNewBatchThreshold
var pacingTableName = 'certstatepacing'
var graphTenantWriteBudgets = join(graphTenantWriteBudgetItems, ',')

// Multi-tenant serving (docs/tenants.md): the app registration is made here in the public cloud, or given.
var tokenExchangeAudiences = {
  global: 'api://AzureADTokenExchange'
  usgov: 'api://AzureADTokenExchangeUSGov'
  usgovdod: 'api://AzureADTokenExchangeUSGov'
  china: 'api://AzureADTokenExchangeChina'
}
// Several tenants' short waits for their write slots add up: a deployment that serves other tenants runs
// twice host.json's queue concurrency (16 + 8 invocations per instance instead of 8 + 4; docs/tenants.md).
var servesCustomerTenants = multiTenant || !empty(servedTenantIds)
var queueBatchSize = servesCustomerTenants ? 16 : 8
var queueNewBatchThreshold = servesCustomerTenants ? 8 : 4
var createMultiTenantApp = servesCustomerTenants && empty(multiTenantAppClientId) && (graphCloud == 'global') && (environment().name == 'AzureCloud')

var privateNetworking = publicNetworkAccess == 'Disabled'
// A Consumption Logic App reaches the queue through a multi-tenant connector, which a storage
// account without public network access refuses.
var logicAppEnabled = deployLogicApp && !privateNetworking

// One authorization policy per front door caller; the app id claim depends on the token version.
var frontDoorAppIdClaim = endsWith(frontDoorTokenIssuer, '/v2.0') ? 'azp' : 'appid'
var frontDoorCallersByObjectId = [
  for id in frontDoorCallerObjectIds: {
    claim: 'oid'
    value: id
  }
]
var frontDoorCallersByAppId = [
  for id in frontDoorCallerAppIds: {
    claim: frontDoorAppIdClaim
    value: id
  }
]
// 0..100 % as the 0.00..1.00 the OpenTelemetry sampler reads (Bicep has no fractions).
var traceSamplingRatio = '${traceSamplingPercent / 100}.${padLeft(string(traceSamplingPercent % 100), 2, '0')}'
// How many writes a minute the write limit allows one tenant: the speed at which a backlog drains.
var drainPerMinute = (graphWriteLimit * 60) / graphWriteWindowSeconds

var storageAccountName = 'st${resourceToken}'
var auditTableName = 'certstateaudit'
var registryTableName = 'certstatetenants'
var deploymentContainerName = 'app-package'
var functionAppName = 'func-${namePrefix}-${resourceToken}'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${namePrefix}-${resourceToken}'
  location: location
  tags: allTags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring-${resourceToken}'
  params: {
    location: location
    tags: allTags
    logAnalyticsName: 'log-${namePrefix}-${resourceToken}'
    appInsightsName: 'appi-${namePrefix}-${resourceToken}'
    retentionInDays: logRetentionDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage-${resourceToken}'
  params: {
    name: storageAccountName
    location: location
    tags: allTags
    inputQueueName: inputQueueName
    resultQueueName: resultQueueName
    deploymentContainerName: deploymentContainerName
    auditTableName: auditTableName
    registryTableName: registryTableName
    pacingTableName: pacingTableName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    skuName: storageSkuName
    publicNetworkAccess: publicNetworkAccess
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac-${resourceToken}'
  params: {
    storageAccountName: storage.outputs.name
    inputQueueName: storage.outputs.inputQueueName
    poisonQueueName: storage.outputs.poisonQueueName
    resultQueueName: storage.outputs.resultQueueName
    auditTableName: storage.outputs.auditTableName
    registryTableName: storage.outputs.registryTableName
    pacingTableName: storage.outputs.pacingTableName
    appInsightsName: monitoring.outputs.appInsightsName
    functionPrincipalId: identity.properties.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module network 'modules/network.bicep' = if (privateNetworking) {
  name: 'network-${resourceToken}'
  params: {
    name: 'vnet-${namePrefix}-${resourceToken}'
    location: location
    tags: allTags
    addressPrefix: virtualNetworkAddressPrefix
    functionSubnetPrefix: functionSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
  }
}

module storageEndpoints 'modules/privateendpoints.bicep' = if (privateNetworking) {
  name: 'storage-endpoints-${resourceToken}'
  params: {
    location: location
    tags: allTags
    serviceName: storage.outputs.name
    serviceId: storage.outputs.id
    // Table too: with public access off, a table (the audit trail) is reachable only this way.
    groupIds: [
      'blob'
      'queue'
      'table'
    ]
    subnetId: network!.outputs.privateEndpointSubnetId
    privateDnsZoneIds: network!.outputs.privateDnsZoneIds
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp-${resourceToken}'
  params: {
    name: functionAppName
    planName: 'plan-${namePrefix}-${resourceToken}'
    location: location
    tags: allTags
    serviceName: 'certstate'
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    identityId: identity.id
    identityClientId: identity.properties.clientId
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyInstances: min(alwaysReadyInstances, maximumInstanceCount)
    zoneRedundant: zoneRedundant
    graphBaseUrl: graphBaseUrls[graphCloud]
    inputQueueName: inputQueueName
    resultQueueName: resultQueueName
    graphWriteBudget: graphWriteBudget
    graphWriteWindowSeconds: graphWriteWindowSeconds
    graphConnectTimeoutSeconds: graphConnectTimeoutSeconds
    graphReadTimeoutSeconds: graphReadTimeoutSeconds
    graphMaxAttempts: graphMaxAttempts
    graphMaxWaitSeconds: graphMaxWaitSeconds
    publicNetworkAccess: publicNetworkAccess
    virtualNetworkSubnetId: privateNetworking ? network!.outputs.functionSubnetId : ''
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    auditTableName: auditTableName
    registryTableName: registryTableName
    auditRetentionDays: auditRetentionDays
    traceSamplingRatio: traceSamplingRatio
    graphSlotWaitSeconds: graphSlotWaitSeconds
    graphTenantWriteBudgets: graphTenantWriteBudgets
    homeTenantId: tenant().tenantId
    servedTenantIds: join(servedTenantIds, ',')
    multiTenantAppClientId: createMultiTenantApp ? multiTenantApp!.outputs.appId : multiTenantAppClientId
    authorityHost: environment().authentication.loginEndpoint
    queueBatchSize: queueBatchSize
    queueNewBatchThreshold: queueNewBatchThreshold
    workerThreadCount: workerThreadCount
    pacingTableName: storage.outputs.pacingTableName
  }
  // The identity must hold its storage roles, and a private account its endpoints, before the
  // host first starts and before the first deployment package is read.
  dependsOn: [
    rbac
    storageEndpoints
  ]
}

// Inbound to the app (and its SCM site, where deployments go) only through the VNet.
module functionEndpoint 'modules/privateendpoints.bicep' = if (privateNetworking) {
  name: 'function-endpoint-${resourceToken}'
  params: {
    location: location
    tags: allTags
    serviceName: functionApp.outputs.name
    serviceId: functionApp.outputs.id
    groupIds: [
      'sites'
    ]
    subnetId: network!.outputs.privateEndpointSubnetId
    privateDnsZoneIds: network!.outputs.privateDnsZoneIds
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts-${resourceToken}'
  params: {
    location: location
    tags: allTags
    namePrefix: '${namePrefix}-${resourceToken}'
    appInsightsName: monitoring.outputs.appInsightsName
    alertEmail: alertEmail
    failedOutcomesThreshold: failedOutcomesThreshold
    drainPerMinute: drainPerMinute
    backlogMinutes: backlogMinutes
  }
}

// The Microsoft Graph Bicep extension is public-cloud only; elsewhere use the script.
var graphGrantEnabled = grantGraphAppRole && (graphCloud == 'global') && (environment().name == 'AzureCloud')

module graphAppRole 'modules/graph-app-role.bicep' = if (graphGrantEnabled) {
  name: 'graph-app-role-${resourceToken}'
  params: {
    principalId: identity.properties.principalId
  }
}

module multiTenantApp 'modules/multitenant-app.bicep' = if (createMultiTenantApp) {
  name: 'multitenant-app-${resourceToken}'
  params: {
    uniqueName: 'certstate-${namePrefix}-${resourceToken}'
    displayName: 'certstate (${environmentName})'
    identityPrincipalId: identity.properties.principalId
    tokenExchangeAudience: tokenExchangeAudiences[graphCloud]
  }
}

module logicApp 'modules/logicapp.bicep' = if (logicAppEnabled) {
  name: 'logicapp-${resourceToken}'
  params: {
    name: 'logic-${namePrefix}-${resourceToken}'
    connectionName: 'azurequeues-${namePrefix}-${resourceToken}'
    location: location
    tags: allTags
    storageAccountName: storage.outputs.name
    inputQueueName: storage.outputs.inputQueueName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    allowedCallers: concat(frontDoorCallersByObjectId, frontDoorCallersByAppId)
    tokenIssuer: frontDoorTokenIssuer
    tokenAudience: frontDoorTokenAudience
    allowedCallerIpRanges: frontDoorAllowedCallerIpRanges
  }
}

// Outputs: names and ids only (azd writes them to .azure/<env>/.env). Never a key, SAS or
// connection string. The front door's endpoint carries no SAS: it is disabled, callers send a token.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output INPUT_QUEUE_NAME string = storage.outputs.inputQueueName
output RESULT_QUEUE_NAME string = storage.outputs.resultQueueName
output AUDIT_TABLE_NAME string = storage.outputs.auditTableName
output REGISTRY_TABLE_NAME string = storage.outputs.registryTableName
output POISON_QUEUE_NAME string = storage.outputs.poisonQueueName
output MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output GRAPH_BASE_URL string = graphBaseUrls[graphCloud]
output GRAPH_APP_ROLE_GRANTED bool = graphGrantEnabled
output GRAPH_WRITE_BUDGET int = graphWriteBudget
output GRAPH_TENANT_WRITE_BUDGETS string = graphTenantWriteBudgets
output HOME_TENANT_ID string = tenant().tenantId
output SERVED_TENANT_IDS string = join(servedTenantIds, ',')
output MULTITENANT_APP_CLIENT_ID string = createMultiTenantApp ? multiTenantApp!.outputs.appId : multiTenantAppClientId
output LOGIC_APP_NAME string = logicAppEnabled ? logicApp!.outputs.name : ''
output LOGIC_APP_ENDPOINT string = logicAppEnabled ? logicApp!.outputs.endpoint : ''
