// Alert rules and the operations workbook, over the function's Application Insights.
//
// Every query reads what certstate emits (shared/telemetry.py): the OpenTelemetry metrics land in
// customMetrics, unsampled. docs/operations.md holds the same KQL with what each alert means and
// what to do; tests/infra/test_monitoring.py checks that both copies match and that every field a
// query names is one the code emits.

param location string
param tags object
param namePrefix string
param appInsightsName string

@description('Where alert e-mails go. Empty: the rules still fire (visible in the portal), but nobody is mailed.')
param alertEmail string = ''

@description('Failed outcomes in 15 minutes above which the failed-outcomes alert fires (0: any failed outcome).')
param failedOutcomesThreshold int = 0

@description('Graph writes per minute at the write limit (graphWriteLimit per graphWriteWindowSeconds): how fast a backlog can drain.')
param drainPerMinute int

@minValue(5)
@maxValue(55)
@description('A backlog the write limit cannot drain in this many minutes, and still growing over them, fires the backlog alert.')
param backlogMinutes int = 30

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

var operatorReceiver = {
  name: 'operator'
  emailAddress: alertEmail
  useCommonAlertSchema: true
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${namePrefix}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: take('certstate', 12)
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [operatorReceiver]
  }
}

var failedOutcomesQuery = '''
customMetrics
| where name == "certstate.outcomes"
| where tostring(customDimensions.status) == "failed"
| summarize failed = sum(valueSum) by code = tostring(customDimensions.code)
'''

var poisonQuery = '''
customMetrics
| where name == "certstate.queue.depth"
| where tostring(customDimensions.queue) == "poison"
| summarize poisoned = max(valueMax)
'''

var throttlingQuery = '''
customMetrics
| where name == "certstate.graph.responses"
| where tostring(customDimensions.httpStatus) == "429"
| summarize throttled = sum(valueSum)
'''

var backlogQuery = '''
customMetrics
| where name == "certstate.queue.depth"
| where tostring(customDimensions.queue) == "input"
| summarize startDepth = avgif(valueMax, timestamp < ago(BACKLOG_MINUTESm - 5m)), endDepth = avgif(valueMax, timestamp > ago(5m))
| extend drainMinutes = endDepth / DRAIN_PER_MINUTE
| where endDepth > startDepth and drainMinutes > BACKLOG_MINUTES
| project endDepth, drainMinutes
'''

var credentialQuery = '''
customMetrics
| where name in ("certstate.outcomes", "certstate.redeliveries")
| where tostring(customDimensions.code) in ("credentialUnavailable", "graphUnauthorized")
| summarize failures = sum(valueSum) by code = tostring(customDimensions.code)
'''

var auditQuery = '''
customMetrics
| where name == "certstate.audit.failures"
| summarize failures = sum(valueSum)
'''

// name, severity (0 critical .. 4 verbose), query, measured column, threshold, window, periods that must fail.
var rules = [
  {
    name: 'failed-outcomes'
    description: 'Failed outcomes above the threshold in 15 minutes, by error code (runbook: docs/operations.md).'
    severity: 2
    query: failedOutcomesQuery
    column: 'failed'
    threshold: failedOutcomesThreshold
    window: 'PT15M'
    periods: 1
    dimensions: [
      {
        name: 'code'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
  {
    name: 'poison'
    description: 'A message is in the poison queue: it could not even be read as a message (runbook: docs/operations.md).'
    severity: 1
    query: poisonQuery
    column: 'poisoned'
    threshold: 0
    window: 'PT5M'
    periods: 1
    dimensions: []
  }
  {
    name: 'throttling'
    description: 'Graph answered 429 in each of the last three 5-minute windows (runbook: docs/operations.md).'
    severity: 2
    query: throttlingQuery
    column: 'throttled'
    threshold: 0
    window: 'PT5M'
    periods: 3
    dimensions: []
  }
  {
    name: 'backlog'
    description: 'The input queue is growing and holds more than the write limit can drain in ${backlogMinutes} minutes (runbook: docs/operations.md).'
    severity: 2
    query: replace(replace(backlogQuery, 'BACKLOG_MINUTES', string(backlogMinutes)), 'DRAIN_PER_MINUTE', '${drainPerMinute}.0')
    column: ''
    threshold: 0
    window: 'PT1H'
    periods: 1
    dimensions: []
  }
  {
    name: 'credentials'
    description: 'No token, or Graph refused the token twice (runbook: docs/operations.md).'
    severity: 1
    query: credentialQuery
    column: 'failures'
    threshold: 0
    window: 'PT15M'
    periods: 1
    dimensions: [
      {
        name: 'code'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
  {
    name: 'audit'
    description: 'Outcomes went out without their audit row (runbook: docs/operations.md).'
    severity: 2
    query: auditQuery
    column: 'failures'
    threshold: 0
    window: 'PT15M'
    periods: 1
    dimensions: []
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: 'alert-${namePrefix}-${rule.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: 'certstate: ${rule.name}'
      description: rule.description
      severity: rule.severity
      enabled: true
      evaluationFrequency: 'PT5M'
      windowSize: rule.window
      scopes: [
        appInsights.id
      ]
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: empty(rule.column) ? 'Count' : 'Total'
            metricMeasureColumn: empty(rule.column) ? null : rule.column
            operator: 'GreaterThan'
            threshold: rule.threshold
            dimensions: rule.dimensions
            failingPeriods: {
              numberOfEvaluationPeriods: rule.periods
              minFailingPeriodsToAlert: rule.periods
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, namePrefix, 'certstate-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'certstate operations (${namePrefix})'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: loadTextContent('../monitoring/workbook.json')
  }
}

output actionGroupId string = actionGroup.id
output workbookId string = workbook.id
