// The function's storage account: host storage (AzureWebJobsStorage, identity-based), the Flex
// deployment package container, the input, poison and result queues, the audit table and the tenant registry.

param name string
param location string
param tags object
param inputQueueName string
param resultQueueName string
param deploymentContainerName string
param auditTableName string
param registryTableName string
param pacingTableName string
param logAnalyticsWorkspaceId string

@allowed([
  'Enabled'
  'Disabled'
])
@description('Disabled: only the private endpoints (main.bicep publicNetworkAccess) reach the account.')
param publicNetworkAccess string = 'Enabled'

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
@description('Replication (main.bicep storageSkuName).')
param skuName string = 'Standard_LRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  //checkov:skip=CKV_AZURE_35:Public by default (main.bicep publicNetworkAccess=Enabled): Flex without VNet integration and the Logic Apps queue connector reach storage over its public endpoint. Disabled denies it and adds private endpoints. Shared keys are off, so every call needs an Entra identity with a data role.
  //checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the publicNetworkAccess parameter decides; with Enabled, access is Entra ID only.
  //checkov:skip=CKV_AZURE_206:Geo-replication is a choice (storageSkuName): the queues hold transient work, the package is re-deployable, and the function and Logic App are single-region anyway.
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicNetworkAccess
    // Private: no trusted-service bypass either; the function reaches the account through its VNet.
    networkAcls: {
      bypass: publicNetworkAccess == 'Enabled' ? 'AzureServices' : 'None'
      defaultAction: publicNetworkAccess == 'Enabled' ? 'Allow' : 'Deny'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// Flex reads the app package from here with the user-assigned identity.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource inputQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: inputQueueName
}

// The host would create it on first use; creating it here lets operators watch and grant it.
resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${inputQueueName}-poison'
}

resource resultQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: resultQueueName
}

// Storage logs to Log Analytics: who read, wrote and deleted what (Entra principal ids), per service.
// Blob: the deployment package and the host's leases and keys; queue: every message put, read, deleted.
var storageLogs = [
  {
    category: 'StorageRead'
    enabled: true
  }
  {
    category: 'StorageWrite'
    enabled: true
  }
  {
    category: 'StorageDelete'
    enabled: true
  }
]

var storageMetrics = [
  {
    category: 'Transaction'
    enabled: true
  }
]

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'blob-to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageLogs
    metrics: storageMetrics
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

// Every outcome, kept AUDIT_RETENTION_DAYS (docs/operations.md, "Audit trail"). Created here: the
// function's identity may write rows of this table only, not create tables.
resource auditTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: auditTableName
}

// The tenant registry (docs/tenants.md): one row per served customer tenant. The function only reads
// it; the operator writes it with `certstate tenants`.
resource registryTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: registryTableName
}

// Each tenant's write schedule, shared by every instance (docs/design.md, "Pacing across instances"):
// one row per tenant, read and conditionally replaced by the function; created here, as the audit table.
resource pacingTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: pacingTableName
}

// Storage logs for the queue service: who put, read and deleted messages (Entra principal ids).
resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'queue-to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageLogs
    metrics: storageMetrics
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output inputQueueName string = inputQueue.name
output poisonQueueName string = poisonQueue.name
output resultQueueName string = resultQueue.name
output auditTableName string = auditTable.name
output registryTableName string = registryTable.name
output pacingTableName string = pacingTable.name
