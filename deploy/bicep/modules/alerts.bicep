// Where the speed layer's alerts land in Azure Monitor: a custom table in a Log Analytics
// workspace, a data collection endpoint (DCE) and a data collection rule (DCR) whose
// stream `Custom-KvlakeAlerts` kvlake posts to with the Logs Ingestion API, and the
// Monitoring Metrics Publisher role on the DCR for kvlake's identity (the only role the
// API needs). Sentinel analytics rules and workbooks query `KvlakeAlerts_CL`.
//
// kvlake hot --alert-logs-endpoint <logsIngestionEndpoint> --alert-logs-rule <dcrImmutableId>
//            [--alert-logs-stream <streamName>]   (outputs of this module)
//
// The stream's columns are the JSON keys kvlake sends (ingest/src/alerts/logs.rs); the
// test kit's stand-in (tests/src/logsingestion.rs) refuses any other, and a test checks
// that its list and this one agree.

@description('Location of the DCE and DCR (the workspace\'s region).')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Name of the existing Log Analytics workspace that holds the table.')
param workspaceName string

@description('Prefix of the DCE and DCR names.')
param namePrefix string

@description('Principal id of kvlake\'s managed identity (gets Monitoring Metrics Publisher on the DCR).')
param principalId string

@description('Id of the built-in role Monitoring Metrics Publisher (main.bicep\'s roles).')
param publisherRoleId string

@description('Days the table keeps alerts (interactive retention).')
@minValue(4)
@maxValue(730)
param retentionDays int = 90

@description('Public network access of the DCE. Disabled needs an Azure Monitor Private Link Scope with the DCE in it (not included here).')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Enabled'

var tableName = 'KvlakeAlerts_CL'
var streamName = 'Custom-KvlakeAlerts'

// One list for the table and the stream: the stream's rows go to the table unchanged.
var columns = [
  {
    name: 'TimeGenerated'
    type: 'datetime'
  }
  {
    name: 'AlertId'
    type: 'string'
  }
  {
    name: 'Kind'
    type: 'string'
  }
  {
    name: 'SubjectType'
    type: 'string'
  }
  {
    name: 'Subject'
    type: 'string'
  }
  {
    name: 'VaultName'
    type: 'string'
  }
  {
    name: 'Identity'
    type: 'string'
  }
  {
    name: 'CallerObjectId'
    type: 'string'
  }
  {
    name: 'CallerIp'
    type: 'string'
  }
  {
    name: 'WindowStart'
    type: 'datetime'
  }
  {
    name: 'WindowEnd'
    type: 'datetime'
  }
  {
    name: 'Observed'
    type: 'real'
  }
  {
    name: 'Threshold'
    type: 'real'
  }
  {
    name: 'Description'
    type: 'string'
  }
  {
    name: 'DetectedAt'
    type: 'datetime'
  }
  {
    name: 'EventTime'
    type: 'datetime'
  }
  {
    name: 'SourceTopic'
    type: 'string'
  }
  {
    name: 'SourcePartition'
    type: 'int'
  }
  {
    name: 'SourceOffset'
    type: 'long'
  }
  {
    name: 'SourceRecordIndex'
    type: 'int'
  }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: tableName
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionDays
    schema: {
      name: tableName
      description: 'kvlake speed-layer alerts, one row per delivery (de-duplicate by AlertId)'
      columns: columns
    }
  }
}

resource endpoint 'Microsoft.Insights/dataCollectionEndpoints@2023-03-11' = {
  name: 'dce-${namePrefix}-alerts'
  location: location
  tags: tags
  properties: {
    networkAcls: {
      publicNetworkAccess: publicNetworkAccess
    }
  }
}

resource rule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: 'dcr-${namePrefix}-alerts'
  location: location
  tags: tags
  properties: {
    dataCollectionEndpointId: endpoint.id
    streamDeclarations: {
      '${streamName}': {
        columns: columns
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'workspace'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      {
        streams: [
          streamName
        ]
        destinations: [
          'workspace'
        ]
        transformKql: 'source'
        outputStream: 'Custom-${tableName}'
      }
    ]
  }
  dependsOn: [
    table
  ]
}

// Send to this rule only.
resource publisherOnRule 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(rule.id, principalId, publisherRoleId)
  scope: rule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', publisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

@description('--alert-logs-endpoint')
output logsIngestionEndpoint string = endpoint.properties.logsIngestion.endpoint

@description('--alert-logs-rule')
output dcrImmutableId string = rule.properties.immutableId

@description('--alert-logs-stream')
output streamName string = streamName

@description('The table Sentinel rules and workbooks query.')
output tableName string = tableName
