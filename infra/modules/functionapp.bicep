// Flex Consumption plan and the Python function app.
//
// Flex rejects or ignores many classic settings (FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION,
// WEBSITE_CONTENT*, WEBSITE_RUN_FROM_PACKAGE, linuxFxVersion, alwaysOn, ftpsState, ...): runtime,
// scale and deployment live in functionAppConfig instead. tests/infra checks that none creeps in.

param name string
param planName string
param location string
param tags object

@description('azd service name (azure.yaml); azd finds the app by the azd-service-name tag.')
param serviceName string

param storageAccountName string
param deploymentContainerName string
param appInsightsName string

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

param pythonVersion string
param maximumInstanceCount int
param instanceMemoryMB int

@description('Always-ready instances of the queue trigger\'s function group (0: scale from zero).')
param alwaysReadyInstances int

@description('Zone-redundant Flex plan (only in regions that support it for Flex).')
param zoneRedundant bool = false

param graphBaseUrl string
param inputQueueName string
param resultQueueName string
param graphWriteBudget int
param graphWriteWindowSeconds int
param graphConnectTimeoutSeconds int
param graphReadTimeoutSeconds int
param graphMaxAttempts int
param graphMaxWaitSeconds int
param auditTableName string

@description('REGISTRY_TABLE_NAME: the tenant registry the function reads (docs/tenants.md).')
param registryTableName string
param auditRetentionDays int

@description('OTEL_TRACES_SAMPLER_ARG: the share of message traces kept, 0.00 to 1.00.')
param traceSamplingRatio string

param graphSlotWaitSeconds int

@description('GRAPH_TENANT_WRITE_BUDGETS: <tenant>=<writes>,... (empty: every tenant gets graphWriteBudget).')
param graphTenantWriteBudgets string

@description('HOME_TENANT_ID: the tenant of the function identity.')
param homeTenantId string

@description('SERVED_TENANT_IDS: comma-separated customer tenants (empty: the home tenant only).')
param servedTenantIds string

@description('MULTITENANT_APP_CLIENT_ID: the app that trusts the function identity (empty when no tenant is served).')
param multiTenantAppClientId string

@description('AZURE_AUTHORITY_HOST: this cloud\'s Entra ID, for the client-assertion flow.')
param authorityHost string

@allowed([
  'Enabled'
  'Disabled'
])
@description('Inbound access to the app and its SCM site. Disabled: only through the private endpoint (main.bicep publicNetworkAccess).')
param publicNetworkAccess string = 'Enabled'

@description('Subnet (delegated to Microsoft.App/environments) for Flex VNet integration: all outbound traffic goes through it. Empty: none.')
param virtualNetworkSubnetId string = ''

@description('Log Analytics workspace for the app\'s diagnostic settings.')
param logAnalyticsWorkspaceId string

@description('host.json extensions.queues.batchSize, as an app setting (higher when several tenants are served).')
param queueBatchSize int

@description('host.json extensions.queues.newBatchThreshold, as an app setting.')
param queueNewBatchThreshold int

@description('PYTHON_THREADPOOL_THREAD_COUNT: one worker thread per invocation the host may start.')
param workerThreadCount int

@description('GRAPH_PACING_TABLE_NAME: the table of the tenants\' shared write schedules.')
param pacingTableName string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  //checkov:skip=CKV_AZURE_225:Zone redundancy for Flex is regional; it is opt-in through the zoneRedundant parameter.
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    //checkov:skip=CKV_AZURE_17:Client certificates do not apply: the app has no HTTP functions (queue trigger only).
    httpsOnly: true
    //checkov:skip=CKV_AZURE_222:Public by default (main.bicep publicNetworkAccess=Enabled), so azd and the Functions tooling can publish through the SCM endpoint with Entra ID (basic auth is off); the app exposes no HTTP functions. Disabled turns it off and adds a private endpoint.
    publicNetworkAccess: publicNetworkAccess
    // Flex routes all outbound traffic through the integrated subnet (no vnetRouteAllEnabled on Flex).
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      //checkov:skip=CKV_AZURE_78:Flex Consumption does not accept siteConfig.ftpsState (Flex deprecations list) and offers no FTP; FTP and SCM basic credentials are off (basicPublishingCredentialsPolicies below), packages come only from the blob container.
      //checkov:skip=CKV_AZURE_213:No HTTP functions, so there is no health-check path; the Functions host health is monitored by the platform.
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      // App settings are strings. Names must match shared/settings.py (tests/infra checks both
      // ways). Set here rather than in a sites/config resource, so the host starts with them.
      appSettings: [
        // Host storage and the queue bindings (connection "AzureWebJobsStorage"), identity-based.
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: 'https://${account.name}.blob.${environment().suffixes.storage}'
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: 'https://${account.name}.queue.${environment().suffixes.storage}'
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: 'https://${account.name}.table.${environment().suffixes.storage}'
        }
        // Telemetry with Entra ID (local auth is disabled on the component).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        // The worker exports with the Azure Monitor exporters (shared/telemetry.py) and tells the host so,
        // which then stops relaying the worker's log lines: one copy of each (docs/operations.md).
        {
          name: 'PYTHON_ENABLE_OPENTELEMETRY'
          value: 'true'
        }
        // Spans are sampled at a fixed rate shared/telemetry.py reads; metrics and log lines never are.
        {
          name: 'OTEL_TRACES_SAMPLER'
          value: 'microsoft.fixed_percentage'
        }
        {
          name: 'OTEL_TRACES_SAMPLER_ARG'
          value: traceSamplingRatio
        }
        // The app (shared/settings.py).
        {
          name: 'GRAPH_BASE_URL'
          value: graphBaseUrl
        }
        {
          name: 'INPUT_QUEUE_NAME'
          value: inputQueueName
        }
        {
          name: 'RESULT_QUEUE_NAME'
          value: resultQueueName
        }
        {
          name: 'CREDENTIAL_MODE'
          value: 'managedIdentity'
        }
        {
          name: 'MANAGED_IDENTITY_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'GRAPH_CONNECT_TIMEOUT_SECONDS'
          value: string(graphConnectTimeoutSeconds)
        }
        {
          name: 'GRAPH_READ_TIMEOUT_SECONDS'
          value: string(graphReadTimeoutSeconds)
        }
        {
          name: 'GRAPH_MAX_ATTEMPTS'
          value: string(graphMaxAttempts)
        }
        {
          name: 'GRAPH_MAX_WAIT_SECONDS'
          value: string(graphMaxWaitSeconds)
        }
        {
          name: 'GRAPH_WRITE_BUDGET'
          value: string(graphWriteBudget)
        }
        {
          name: 'GRAPH_WRITE_WINDOW_SECONDS'
          value: string(graphWriteWindowSeconds)
        }
        // Outages (docs/design.md, "Outages: the breaker and deferral"): the code's defaults, stated.
        {
          name: 'BREAKER_FAILURE_THRESHOLD'
          value: '5'
        }
        {
          name: 'BREAKER_COOLDOWN_SECONDS'
          value: '15'
        }
        {
          name: 'BREAKER_MAX_COOLDOWN_SECONDS'
          value: '120'
        }
        {
          name: 'DEFERRAL_MAX_SECONDS'
          value: '3600'
        }
        {
          name: 'AUDIT_TABLE_NAME'
          value: auditTableName
        }
        {
          name: 'AUDIT_RETENTION_DAYS'
          value: string(auditRetentionDays)
        }
        {
          name: 'AUDIT_WAIT_SECONDS'
          value: '3'
        }
        {
          name: 'GRAPH_SLOT_WAIT_SECONDS'
          value: string(graphSlotWaitSeconds)
        }
        {
          name: 'GRAPH_TENANT_WRITE_BUDGETS'
          value: graphTenantWriteBudgets
        }
        // Pacing across instances (docs/design.md): the shared schedules, and the split without them.
        {
          name: 'GRAPH_PACING_TABLE_NAME'
          value: pacingTableName
        }
        {
          name: 'GRAPH_PACING_MAX_INSTANCES'
          value: string(maximumInstanceCount)
        }
        {
          name: 'PYTHON_THREADPOOL_THREAD_COUNT'
          value: string(workerThreadCount)
        }
        // Tenants (docs/tenants.md): customer tenants get tokens from the multi-tenant app, secretless.
        {
          name: 'REGISTRY_TABLE_NAME'
          value: registryTableName
        }
        {
          name: 'REGISTRY_REFRESH_SECONDS'
          value: '30'
        }
        {
          name: 'HOME_TENANT_ID'
          value: homeTenantId
        }
        {
          name: 'SERVED_TENANT_IDS'
          value: servedTenantIds
        }
        {
          name: 'MULTITENANT_APP_CLIENT_ID'
          value: multiTenantAppClientId
        }
        {
          name: 'AZURE_AUTHORITY_HOST'
          value: authorityHost
        }
        // The host's queue concurrency (host.json's values for one tenant; the app reads them too).
        {
          name: 'AzureFunctionsJobHost__extensions__queues__batchSize'
          value: string(queueBatchSize)
        }
        {
          name: 'AzureFunctionsJobHost__extensions__queues__newBatchThreshold'
          value: string(queueNewBatchThreshold)
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      //checkov:skip=CKV_AZURE_212:numberOfWorkers does not exist on Flex; the platform scales per function up to maximumInstanceCount.
      scaleAndConcurrency: {
        // Flex scales each non-HTTP trigger in its own group, `function:<name>`: the queue trigger's.
        alwaysReady: (alwaysReadyInstances == 0) ? [] : [
          {
            name: 'function:process_certificate_state_update'
            instanceCount: alwaysReadyInstances
          }
        ]
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// No publishing with basic (user name and password) credentials: azd and Core Tools deploy to Flex
// with an Entra ID token, and Flex does not offer FTP at all.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

// Host and worker logs (FunctionAppLogs) and platform metrics to Log Analytics, beside the
// Application Insights telemetry; survives a misconfigured or throttled App Insights.
resource siteDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'function-to-log-analytics'
  scope: site
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
