// Azure RBAC, narrow by design. The Logic App's role is granted in logicapp.bicep (its identity is
// created there) and the Graph app role in graph-app-role.bicep. docs/deploy.md explains each one.

param storageAccountName string
param inputQueueName string
param resultQueueName string
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

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource inputQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: inputQueueName
}

resource resultQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: resultQueueName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// Host storage (AzureWebJobsStorage: leases, host keys blob) and the Flex deployment package.
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

// Trigger and output binding: read, update (release on failure, lock renewal), delete, add, and
// create <input>-poison. Reader + Message Processor cannot release a failed message (403).
resource functionQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionPrincipalId, storageQueueDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'certstate function: queue trigger, result output, poison queue'
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

// Optional operator: put test messages on the input queue ...
resource operatorInputSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(inputQueue.id, operatorPrincipalId, storageQueueDataMessageSender)
  scope: inputQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    description: 'certstate operator: send test messages'
  }
}

// ... and read and delete outcomes on the result queue.
resource operatorResultProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(resultQueue.id, operatorPrincipalId, storageQueueDataMessageProcessor)
  scope: resultQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageProcessor)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    description: 'certstate operator: read outcomes'
  }
}
