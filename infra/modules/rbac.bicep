// Azure RBAC, narrow by design. The Logic App's role is granted in logicapp.bicep (its identity is
// created there) and the Graph app role in graph-app-role.bicep. docs/deploy.md explains each one.
//
// Queue roles are granted per queue, never on the account: every grant is one row of queueGrants
// (queue, principal, role, why). To add one, add a row; nothing else changes.

param storageAccountName string
param inputQueueName string
param poisonQueueName string
param resultQueueName string
param auditTableName string
param registryTableName string
param pacingTableName string
param appInsightsName string

@description('Object id of the function app\'s user-assigned identity.')
param functionPrincipalId string

@description('Optional operator object id for the smoke test; empty for none.')
param operatorPrincipalId string = ''

param operatorPrincipalType string = 'User'

// Built-in role definition ids (learn.microsoft.com built-in roles).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
var storageQueueDataMessageProcessor = '8a0f0c08-91a1-4084-bc3d-661d67233fed'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var storageQueueDataReader = '19e7f393-937e-4f77-808e-94535e297925'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var storageTableDataReader = '76199698-9eea-4c19-bc75-cec21354c6b6'

// The queues exist before these grants (storage.bicep creates all three), so no grant needs the
// right to create a queue: the output binding and the host's poison move add a message first and
// create the queue only when that answers 404 (Azure WebJobs Storage Queues extension).
var functionQueueGrants = [
  {
    queue: inputQueueName
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    role: storageQueueDataContributor
    // Message Processor cannot update a message: the host releases a failed one and renews a long
    // one by updating it (403 without Contributor).
    why: 'certstate function: queue trigger (read, update, delete) and deferrals back onto the input queue'
  }
  {
    queue: poisonQueueName
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    role: storageQueueDataMessageSender
    why: 'certstate function: the host moves a message here after maxDequeueCount deliveries'
  }
  {
    queue: resultQueueName
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    role: storageQueueDataMessageSender
    why: 'certstate function: the result output binding adds one outcome per message'
  }
  // The queue-depth timer reads the approximate message count of each queue (the input queue's
  // Contributor role already allows it).
  {
    queue: poisonQueueName
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    role: storageQueueDataReader
    why: 'certstate function: the queue-depth timer reads how many messages are poisoned'
  }
  {
    queue: resultQueueName
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    role: storageQueueDataReader
    why: 'certstate function: the queue-depth timer reads how many outcomes wait for their consumers'
  }
]

var operatorQueueGrants = [
  {
    queue: inputQueueName
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    role: storageQueueDataMessageSender
    why: 'certstate operator: send test messages'
  }
  {
    queue: resultQueueName
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    role: storageQueueDataMessageProcessor
    why: 'certstate operator: read and delete outcomes'
  }
]

var queueGrants = concat(functionQueueGrants, empty(operatorPrincipalId) ? [] : operatorQueueGrants)

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource grantedQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = [
  for grant in queueGrants: {
    parent: queueService
    name: grant.queue
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource auditTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = {
  parent: tableService
  name: auditTableName
}

resource registryTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = {
  parent: tableService
  name: registryTableName
}

resource pacingTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = {
  parent: tableService
  name: pacingTableName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource queueRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (grant, i) in queueGrants: {
    name: guid(grantedQueues[i].id, grant.principalId, grant.role)
    scope: grantedQueues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', grant.role)
      principalId: grant.principalId
      principalType: grant.principalType
      description: grant.why
    }
  }
]

// Host storage (AzureWebJobsStorage) and the Flex deployment package. The one account-wide grant:
// the Functions host lists containers, creates azure-webjobs-hosts and azure-webjobs-secrets, and
// holds its lease and keys there; Microsoft documents Storage Blob Data Owner on the account as
// the minimum for host storage. The account holds nothing but those two containers and the
// package container, and no queue or table data role comes with it (the audit table has its own).
resource functionBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionPrincipalId, storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'certstate function: host storage and Flex deployment package'
  }
}

// The audit trail: insert and replace rows of this one table (and delete them past the retention).
resource functionAuditWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(auditTable.id, functionPrincipalId, storageTableDataContributor)
  scope: auditTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'certstate function: audit trail rows'
  }
}

// The shared write budgets: read and conditionally replace one row per tenant of this one table.
resource functionPacingWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(pacingTable.id, functionPrincipalId, storageTableDataContributor)
  scope: pacingTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'certstate function: shared write budget rows'
  }
}

// The operator reads the audit trail (`certstate history`, `certstate health`).
resource operatorAuditReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(auditTable.id, operatorPrincipalId, storageTableDataReader)
  scope: auditTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataReader)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    description: 'certstate operator: read the audit trail'
  }
}

// The tenant registry: the function reads it, never writes it (a compromised function cannot serve a
// tenant nobody registered).
resource functionRegistryReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registryTable.id, functionPrincipalId, storageTableDataReader)
  scope: registryTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataReader)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'certstate function: read the tenant registry'
  }
}

// The operator edits the registry (`certstate tenants add | remove | pause | resume`).
resource operatorRegistryWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(registryTable.id, operatorPrincipalId, storageTableDataContributor)
  scope: registryTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    description: 'certstate operator: edit the tenant registry'
  }
}

// Entra-authenticated telemetry (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource functionMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'certstate function: Application Insights ingestion with Entra ID'
  }
}
