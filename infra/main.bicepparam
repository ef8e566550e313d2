// Parameters for infra/main.bicep. azd (azure.yaml) and `az deployment group create -p` both read
// this file; environment variables override the defaults below, so nothing here is environment
// specific. See docs/deploy.md for what each parameter does.
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'certstate')

// 'global' | 'usgov' | 'usgovdod' | 'china'. The Graph grant below works in 'global' only.
param graphCloud = readEnvironmentVariable('CERTSTATE_GRAPH_CLOUD', 'global')

param inputQueueName = 'certificate-state-updates'
param resultQueueName = 'certificate-state-results'

// Pacing: GRAPH_WRITE_BUDGET = graphWriteLimit - graphWriteReserve - 1, for the whole deployment (docs/deploy.md, "Pacing").
param graphWriteLimit = 100
param graphWriteReserve = int(readEnvironmentVariable('CERTSTATE_GRAPH_WRITE_RESERVE', '0'))
param graphWriteWindowSeconds = 20
param maximumInstanceCount = int(readEnvironmentVariable('CERTSTATE_MAXIMUM_INSTANCE_COUNT', '2'))
param instanceMemoryMB = 2048

param grantGraphAppRole = bool(readEnvironmentVariable('CERTSTATE_GRANT_GRAPH_APP_ROLE', 'true'))
param deployLogicApp = bool(readEnvironmentVariable('CERTSTATE_DEPLOY_LOGIC_APP', 'true'))

// Who may call the front door: comma-separated object ids (tokens' oid) and app ids (appid/azp), at
// most five in all (docs/deploy.md, "The front door"). Unset, the deploying user (AZURE_PRINCIPAL_ID,
// set by azd) may call it, for the smoke test; nobody else.
var frontDoorCallers = readEnvironmentVariable('CERTSTATE_FRONT_DOOR_CALLERS', readEnvironmentVariable('AZURE_PRINCIPAL_ID', ''))
var frontDoorApps = readEnvironmentVariable('CERTSTATE_FRONT_DOOR_CALLER_APP_IDS', '')
param frontDoorCallerObjectIds = empty(frontDoorCallers) ? [] : split(frontDoorCallers, ',')
param frontDoorCallerAppIds = empty(frontDoorApps) ? [] : split(frontDoorApps, ',')

// azd sets AZURE_PRINCIPAL_ID to the signed-in user: that user may send test messages and read
// outcomes (queue-scoped roles). Empty outside azd unless you export it.
param operatorPrincipalId = readEnvironmentVariable('AZURE_PRINCIPAL_ID', '')
param operatorPrincipalType = readEnvironmentVariable('AZURE_PRINCIPAL_TYPE', 'User')

// 'Enabled' | 'Disabled': Disabled adds a VNet and private endpoints and drops the Logic App (docs/deploy.md).
param publicNetworkAccess = readEnvironmentVariable('CERTSTATE_PUBLIC_NETWORK_ACCESS', 'Enabled')
