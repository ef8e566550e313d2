// Logic App (Consumption): an HTTPS front door for producers that cannot write to a queue.
// POST a message (schemas/message.schema.json) to the trigger's callback URL; the workflow puts the
// body, as raw JSON text, on the input queue through a managed-identity "azurequeues" connection and
// answers 202 with the correlationId. Validation is the function's job: a bad message comes back
// as a `rejected` outcome on the result queue, exactly as if it had been queued directly.

param name string
param connectionName string
param location string
param tags object
param storageAccountName string
param inputQueueName string
param logAnalyticsWorkspaceId string

// Built-in role: Storage Queue Data Message Sender (add messages, nothing else).
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'

var queueEndpoint = 'https://${storageAccountName}.queue.${environment().suffixes.storage}'
var messageSchema = loadJsonContent('../../schemas/message.schema.json')

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

// API connection that authenticates as the calling Logic App's managed identity (no key stored).
resource connection 'Microsoft.Web/connections@2016-06-01' = {
  name: connectionName
  location: location
  tags: tags
  properties: {
    displayName: connectionName
    api: {
      id: subscriptionResourceId('Microsoft.Web/locations/managedApis', location, 'azurequeues')
    }
    #disable-next-line BCP089
    parameterValueSet: {
      name: 'managedIdentityAuth'
      values: {}
    }
  }
}

resource workflow 'Microsoft.Logic/workflows@2019-05-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    state: 'Enabled'
    definition: {
      '$schema': 'https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#'
      contentVersion: '1.0.0.0'
      parameters: {
        '$connections': {
          type: 'Object'
          defaultValue: {}
        }
      }
      triggers: {
        manual: {
          type: 'Request'
          kind: 'Http'
          inputs: {
            method: 'POST'
            schema: messageSchema
          }
        }
      }
      actions: {
        'Put_a_message_on_a_queue_(V2)': {
          type: 'ApiConnection'
          runAfter: {}
          inputs: {
            host: {
              connection: {
                name: '@parameters(\'$connections\')[\'azurequeues\'][\'connectionId\']'
              }
            }
            method: 'post'
            path: '/v2/storageAccounts/@{encodeURIComponent(encodeURIComponent(\'${queueEndpoint}\'))}/queues/@{encodeURIComponent(\'${inputQueueName}\')}/messages'
            // Raw JSON text, not base64: host.json has messageEncoding "none".
            body: '@{string(triggerBody())}'
          }
        }
        Accepted: {
          type: 'Response'
          kind: 'Http'
          runAfter: {
            'Put_a_message_on_a_queue_(V2)': [
              'Succeeded'
            ]
          }
          inputs: {
            statusCode: 202
            headers: {
              'Content-Type': 'application/json'
            }
            body: {
              correlationId: '@triggerBody()?[\'correlationId\']'
              messageId: '@body(\'Put_a_message_on_a_queue_(V2)\')?[\'MessageId\']'
              runId: '@workflow()[\'run\'][\'name\']'
            }
          }
        }
        Not_queued: {
          type: 'Response'
          kind: 'Http'
          runAfter: {
            'Put_a_message_on_a_queue_(V2)': [
              'Failed'
              'TimedOut'
            ]
          }
          inputs: {
            statusCode: 503
            headers: {
              'Content-Type': 'application/json'
              'Retry-After': '30'
            }
            body: {
              error: 'notQueued'
              correlationId: '@triggerBody()?[\'correlationId\']'
              runId: '@workflow()[\'run\'][\'name\']'
            }
          }
        }
      }
      outputs: {}
    }
    parameters: {
      '$connections': {
        value: {
          azurequeues: {
            id: subscriptionResourceId('Microsoft.Web/locations/managedApis', location, 'azurequeues')
            connectionId: connection.id
            connectionName: connection.name
            connectionProperties: {
              authentication: {
                type: 'ManagedServiceIdentity'
              }
            }
          }
        }
      }
    }
  }
}

// The Logic App may add messages to the input queue, and nothing else.
resource senderOnInputQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(inputQueue.id, workflow.id, storageQueueDataMessageSender)
  scope: inputQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
    principalId: workflow.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'certstate Logic App: put messages on the input queue'
  }
}

// Run and trigger events to Log Analytics.
resource workflowDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logicapp-to-log-analytics'
  scope: workflow
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'WorkflowRuntime'
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

output name string = workflow.name
output id string = workflow.id
output principalId string = workflow.identity.principalId
