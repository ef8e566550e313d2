// Logic App (Consumption): an HTTPS front door for producers that cannot write to a queue.
//
// Who may call: only Entra ID (OAuth) callers the deployer names (one authorization policy per
// caller: issuer + audience + object id or app id), optionally only from given IP ranges; SAS
// (the sig= callback URL) is disabled, so the URL alone lets nobody in.
// What it does: validates the body against schemas/message.schema.json (400 with the reasons when
// it does not match, 413 when it cannot fit a queue message), gives it a correlationId if it has
// none (the run id), puts it on the input queue as raw JSON text through a managed-identity
// "azurequeues" connection, and answers 202 with that correlationId: the outcome on the result
// queue carries it. The function validates again (docs/contract.md): the schema catches most
// mistakes, not all, so a message accepted here can still end `rejected`.
// What it keeps: message bodies never appear in run history or diagnostics (secure inputs and
// outputs on the trigger and on every action that carries the body).

param name string
param connectionName string
param location string
param tags object
param storageAccountName string
param inputQueueName string
param logAnalyticsWorkspaceId string

@maxLength(5)
@description('Callers allowed through the trigger, as { claim, value } (claim oid, appid or azp). Logic Apps allows five authorization policies, one per caller. Empty: nobody can call.')
param allowedCallers array = []

@description('The token issuer every caller\'s token must carry (iss), e.g. https://sts.windows.net/<tenant>/ for v1 tokens.')
param tokenIssuer string

@description('The audience every caller\'s token must carry (aud): the resource the caller requested its token for.')
param tokenAudience string

@description('Optional caller IP ranges (x.x.x.x/n or x.x.x.x-y.y.y.y). Empty: any address (the token still decides).')
param allowedCallerIpRanges array = []

// Built-in role: Storage Queue Data Message Sender (add messages, nothing else).
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'

var queueEndpoint = 'https://${storageAccountName}.queue.${environment().suffixes.storage}'
var messageSchema = loadJsonContent('../../schemas/message.schema.json')

// Queue Storage's limit on one message, and the contract's on the input JSON (shared/contract/limits.py).
// Logic Apps has no byte length, but base64() encodes the UTF-8 bytes: n bytes give 4 * ceil(n / 3)
// characters. Two bytes more make the test exact: 4 * ceil((n + 2) / 3) <= 87384 exactly when n <= 65536.
var queueMessageBytes = 65536
var queueMessageBase64Limit = 4 * ((queueMessageBytes + 2) / 3)

// Run history and diagnostics never show what these operations carry.
var secureInputsAndOutputs = {
  secureData: {
    properties: [
      'inputs'
      'outputs'
    ]
  }
}
// Parse JSON, Compose and Response only have "inputs"; securing them hides their outputs too.
var secureInputs = {
  secureData: {
    properties: [
      'inputs'
    ]
  }
}

// One AAD policy per caller; a token passes when it matches every claim of one policy.
var callerPolicies = [
  for caller in allowedCallers: {
    type: 'AAD'
    claims: [
      {
        name: 'iss'
        value: tokenIssuer
      }
      {
        name: 'aud'
        value: tokenAudience
      }
      {
        name: caller.claim
        value: caller.value
      }
    ]
  }
]

// The policies object needs a key per policy. checkov's Bicep parser has no toObject(), so the
// (at most five) keys are spelled out; a false branch of ?: is never evaluated.
var openAuthenticationPolicies = union((length(callerPolicies) > 0) ? { caller1: callerPolicies[0] } : {},
  (length(callerPolicies) > 1) ? { caller2: callerPolicies[1] } : {},
  (length(callerPolicies) > 2) ? { caller3: callerPolicies[2] } : {},
  (length(callerPolicies) > 3) ? { caller4: callerPolicies[3] } : {},
  (length(callerPolicies) > 4) ? { caller5: callerPolicies[4] } : {}
)

var callerIpAddresses = [
  for range in allowedCallerIpRanges: {
    addressRange: range
  }
]

var triggerAuthentication = {
  // Newer than the 2019-05-01 type definitions; docs/deploy.md says what is and is not verified.
  #disable-next-line BCP037
  sasAuthenticationPolicy: {
    state: 'Disabled'
  }
  openAuthenticationPolicies: {
    policies: openAuthenticationPolicies
  }
}

// An empty allowedCallerIpAddresses would mean "only other Logic Apps": leave it out instead.
var triggerAccessControl = union(triggerAuthentication, empty(allowedCallerIpRanges) ? {} : { allowedCallerIpAddresses: callerIpAddresses })

var jsonHeaders = {
  'Content-Type': 'application/json'
}

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
    accessControl: {
      triggers: triggerAccessControl
    }
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
            // Describes the body to designers and callers; Validate_message enforces it.
            schema: messageSchema
          }
          runtimeConfiguration: secureInputsAndOutputs
        }
      }
      actions: {
        Validate_message: {
          type: 'ParseJson'
          runAfter: {}
          inputs: {
            content: '@triggerBody()'
            schema: messageSchema
          }
          runtimeConfiguration: secureInputs
        }
        Rejected: {
          type: 'Response'
          kind: 'Http'
          runAfter: {
            Validate_message: [
              'Failed'
            ]
          }
          inputs: {
            statusCode: 400
            headers: jsonHeaders
            body: {
              error: 'invalidMessage'
              message: '@{coalesce(actions(\'Validate_message\')?[\'error\']?[\'message\'], \'The body is not a JSON message.\')} See schemas/message.schema.json.'
              // Parse JSON's validation errors: path, errorType, message (they may echo a value).
              errors: '@outputs(\'Validate_message\')?[\'errors\']'
              runId: '@workflow()[\'run\'][\'name\']'
            }
          }
          runtimeConfiguration: secureInputs
        }
        // The contract makes correlationId optional; the front door always sets one, so the
        // caller can find the outcome. Visible in run history on purpose: it is no message content.
        Correlation_id: {
          type: 'Compose'
          runAfter: {
            Validate_message: [
              'Succeeded'
            ]
          }
          inputs: '@coalesce(body(\'Validate_message\')?[\'correlationId\'], workflow()[\'run\'][\'name\'])'
        }
        // Raw JSON text, not base64: host.json has messageEncoding "none".
        Queue_message: {
          type: 'Compose'
          runAfter: {
            Correlation_id: [
              'Succeeded'
            ]
          }
          inputs: '@{string(setProperty(body(\'Validate_message\'), \'correlationId\', outputs(\'Correlation_id\')))}'
          runtimeConfiguration: secureInputs
        }
        Fits_a_queue_message: {
          type: 'If'
          runAfter: {
            Queue_message: [
              'Succeeded'
            ]
          }
          expression: {
            and: [
              {
                lessOrEquals: [
                  '@length(base64(concat(outputs(\'Queue_message\'), \'..\')))'
                  queueMessageBase64Limit
                ]
              }
            ]
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
                body: '@{outputs(\'Queue_message\')}'
              }
              runtimeConfiguration: secureInputsAndOutputs
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
                headers: jsonHeaders
                body: {
                  correlationId: '@outputs(\'Correlation_id\')'
                  // Null unless the connector returns the queue message id (docs/deploy.md).
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
                headers: union(jsonHeaders, {
                  'Retry-After': '30'
                })
                body: {
                  error: 'notQueued'
                  correlationId: '@outputs(\'Correlation_id\')'
                  runId: '@workflow()[\'run\'][\'name\']'
                }
              }
            }
          }
          else: {
            actions: {
              Too_large: {
                type: 'Response'
                kind: 'Http'
                runAfter: {}
                inputs: {
                  statusCode: 413
                  headers: jsonHeaders
                  body: {
                    error: 'messageTooLarge'
                    message: 'The message, with its correlationId, is more than ${queueMessageBytes} bytes of UTF-8 JSON: it cannot fit a queue message.'
                    correlationId: '@outputs(\'Correlation_id\')'
                    runId: '@workflow()[\'run\'][\'name\']'
                  }
                }
              }
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

// Run and trigger events to Log Analytics. Secured inputs and outputs are not sent there either.
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
// The trigger's URL without any SAS parameter: no secret, useless without an accepted token.
output endpoint string = '${workflow.properties.accessEndpoint}/triggers/manual/paths/invoke?api-version=2016-10-01'
