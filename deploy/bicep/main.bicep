// kvlake infrastructure, in one resource group:
//
//   Event Hubs namespace (Standard, Kafka endpoint) + hub + consumer groups
//   Key Vault (RBAC) whose AuditEvent log streams to that hub (diagnostic setting)
//   ADLS Gen2 account (hierarchical namespace) + container: the lake
//   user-assigned managed identity with least-privilege role assignments
//   private endpoints + private DNS zones for all three; public network access off
//   optional: VNet, container registry, Container Apps environment, AKS federation
//
//   az group create -n rg-kvlake -l westeurope
//   az deployment group create -g rg-kvlake -f deploy/bicep/main.bicep \
//     -p namePrefix=kvlake
//
// The deploying principal needs Owner (or Contributor + Role Based Access Control
// Administrator) on the resource group: the template assigns roles.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

@description('Short prefix for resource names (letters, digits, hyphens).')
@maxLength(12)
param namePrefix string = 'kvlake'

@description('Region of every resource. The Key Vault and the Event Hubs namespace must share it (diagnostic settings stream within a region).')
param location string = resourceGroup().location

@description('Tags applied to every resource.')
param tags object = {
  app: 'kvlake'
}

@description('Event Hubs namespace name (globally unique).')
param eventHubsNamespaceName string = 'evhns-${namePrefix}-${uniqueString(resourceGroup().id)}'

@description('The event hub that receives the Key Vault AuditEvent stream: kvlake\'s --topic.')
param eventHubName string = 'kv-audit'

@description('Partitions of the hub. Upper bound of kvlake --scale-out replicas. Fixed at creation on the Standard tier: choose for the peak (see deploy/README.md, Sizing).')
@minValue(1)
@maxValue(32)
param partitionCount int = 8

@description('Event Hubs retention in hours (Standard: at most 168). Must exceed the longest gap between kvlake runs.')
@minValue(1)
@maxValue(168)
param retentionHours int = 168

@description('Throughput units (1 TU = 1 MB/s or 1000 events/s in, 2 MB/s out). Auto-inflate grows it up to maximumThroughputUnits.')
@minValue(1)
@maxValue(40)
param throughputUnits int = 1

@minValue(1)
@maxValue(40)
param maximumThroughputUnits int = 4

@description('Consumer group of the live kvlake (--group).')
param consumerGroupName string = 'kvlake'

@description('Consumer group of backfill replays, so their offset commits never count as live lag.')
param backfillConsumerGroupName string = 'kvlake-backfill'

@description('ADLS Gen2 account name (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param storageAccountName string = take('st${toLower(replace(namePrefix, '-', ''))}${uniqueString(resourceGroup().id)}', 24)

@description('Storage redundancy. ZRS survives a zone; use GZRS/RAGZRS to keep a copy in the paired region (see deploy/README.md, Disaster recovery).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSku string = 'Standard_ZRS'

@description('Container (ADLS Gen2 file system) of the lake.')
param lakeContainerName string = 'lake'

@description('Folder inside the container: the lake URL is abfss://<container>@<account>.dfs.core.windows.net/<folder>.')
param lakeFolder string = 'kv'

@description('Key Vault name (3-24 characters, globally unique). Its AuditEvent log is what kvlake ingests; point the diagnostic settings of your other vaults at the same hub (deploy/README.md).')
@minLength(3)
@maxLength(24)
param keyVaultName string = take('kv-${namePrefix}-${uniqueString(resourceGroup().id)}', 24)

@description('User-assigned managed identity kvlake runs as.')
param identityName string = 'id-${namePrefix}'

// Network ---------------------------------------------------------------------

@description('Create the VNet and its subnets. false: use an existing VNet of this resource group with the subnet names below.')
param createVnet bool = true

param vnetName string = 'vnet-${namePrefix}'
param vnetAddressPrefix string = '10.40.0.0/16'

@description('Subnet of the private endpoints.')
param privateEndpointSubnetName string = 'snet-private-endpoints'
param privateEndpointSubnetPrefix string = '10.40.1.0/24'

@description('Subnet of the Container Apps environment (delegated to Microsoft.App/environments, /27 or larger).')
param appsSubnetName string = 'snet-apps'
param appsSubnetPrefix string = '10.40.2.0/23'

@description('Subnet for an AKS cluster\'s nodes (az aks create --vnet-subnet-id).')
param aksSubnetName string = 'snet-aks'
param aksSubnetPrefix string = '10.40.16.0/20'

@description('Create the private DNS zones and link them to the VNet. false when a hub owns them (then DNS records come from your Azure Policy).')
param createPrivateDnsZones bool = true

// Optional pieces ---------------------------------------------------------------

@description('Create an Azure Container Registry for the kvlake image (the identity gets AcrPull).')
param deployContainerRegistry bool = true

@description('Registry name (5-50 letters and digits, globally unique).')
param containerRegistryName string = take('cr${toLower(replace(namePrefix, '-', ''))}${uniqueString(resourceGroup().id)}', 50)

@description('Create a VNet-integrated Container Apps environment (internal, Consumption profile) for deploy/containerapps.')
param deployContainerAppsEnvironment bool = true

param containerAppsEnvironmentName string = 'cae-${namePrefix}'

@description('AKS OIDC issuer URL (az aks show --query oidcIssuerProfile.issuerUrl). When set, the identity trusts the kvlake service account of that cluster (workload identity).')
param aksOidcIssuerUrl string = ''

@description('Create the speed layer\'s alert table in Log Analytics (KvlakeAlerts_CL) with a data collection endpoint and rule for the Logs Ingestion API (the identity gets Monitoring Metrics Publisher on the rule). The workspace is the Container Apps one, created for either.')
param deployAlertsTable bool = true

param kubernetesNamespace string = 'kvlake'
param kubernetesServiceAccount string = 'kvlake'

// ---------------------------------------------------------------------------
// Built-in role definitions (ids are the same in every tenant)
// ---------------------------------------------------------------------------

var roles = {
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = if (createVnet) {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    subnets: [
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
      {
        name: appsSubnetName
        properties: {
          addressPrefix: appsSubnetPrefix
          delegations: [
            {
              name: 'containerapps'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: aksSubnetName
        properties: {
          addressPrefix: aksSubnetPrefix
        }
      }
    ]
  }
}

resource existingVnet 'Microsoft.Network/virtualNetworks@2024-05-01' existing = if (!createVnet) {
  name: vnetName
}

var vnetId = createVnet ? vnet.id : existingVnet.id
var privateEndpointSubnetId = '${vnetId}/subnets/${privateEndpointSubnetName}'
var appsSubnetId = '${vnetId}/subnets/${appsSubnetName}'
var aksSubnetId = '${vnetId}/subnets/${aksSubnetName}'

// Public-cloud zone names. Sovereign clouds use other suffixes for Service Bus and
// Key Vault; Storage's comes from environment().
module dnsEventHubs 'modules/privateDnsZone.bicep' = if (createPrivateDnsZones) {
  name: 'dns-servicebus'
  params: {
    zoneName: 'privatelink.servicebus.windows.net'
    vnetId: vnetId
    tags: tags
  }
  dependsOn: [
    vnet
  ]
}

module dnsBlob 'modules/privateDnsZone.bicep' = if (createPrivateDnsZones) {
  name: 'dns-blob'
  params: {
    zoneName: 'privatelink.blob.${environment().suffixes.storage}'
    vnetId: vnetId
    tags: tags
  }
  dependsOn: [
    vnet
  ]
}

module dnsDfs 'modules/privateDnsZone.bicep' = if (createPrivateDnsZones) {
  name: 'dns-dfs'
  params: {
    zoneName: 'privatelink.dfs.${environment().suffixes.storage}'
    vnetId: vnetId
    tags: tags
  }
  dependsOn: [
    vnet
  ]
}

module dnsKeyVault 'modules/privateDnsZone.bicep' = if (createPrivateDnsZones) {
  name: 'dns-vaultcore'
  params: {
    zoneName: 'privatelink.vaultcore.azure.net'
    vnetId: vnetId
    tags: tags
  }
  dependsOn: [
    vnet
  ]
}

var zoneIdOf = {
  eventHubs: createPrivateDnsZones ? [dnsEventHubs.outputs.id] : []
  blob: createPrivateDnsZones ? [dnsBlob.outputs.id] : []
  dfs: createPrivateDnsZones ? [dnsDfs.outputs.id] : []
  keyVault: createPrivateDnsZones ? [dnsKeyVault.outputs.id] : []
}

// ---------------------------------------------------------------------------
// Event Hubs
// ---------------------------------------------------------------------------

resource eventHubsNamespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: eventHubsNamespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: throughputUnits
  }
  properties: {
    kafkaEnabled: true
    isAutoInflateEnabled: true
    maximumThroughputUnits: maximumThroughputUnits
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Disabled'
    // SAS stays on: Azure Monitor's diagnostic setting authenticates with an
    // authorization rule, and kvlake uses a Listen-only connection string until
    // it has `--auth entra` (coming later).
    disableLocalAuth: false
  }
}

resource eventHubsNetwork 'Microsoft.EventHub/namespaces/networkRuleSets@2024-01-01' = {
  parent: eventHubsNamespace
  name: 'default'
  properties: {
    publicNetworkAccess: 'Disabled'
    defaultAction: 'Deny'
    // Azure Monitor (the Key Vault diagnostic setting) is a trusted service: without
    // this it cannot write to a namespace whose public access is off.
    trustedServiceAccessEnabled: true
    ipRules: []
    virtualNetworkRules: []
  }
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: eventHubsNamespace
  name: eventHubName
  properties: {
    partitionCount: partitionCount
    retentionDescription: {
      cleanupPolicy: 'Delete'
      retentionTimeInHours: retentionHours
    }
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: eventHub
  name: consumerGroupName
  properties: {
    userMetadata: 'kvlake live hot path (service or scheduled job)'
  }
}

resource backfillConsumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: eventHub
  name: backfillConsumerGroupName
  properties: {
    userMetadata: 'kvlake backfill replays'
  }
}

// kvlake's credential until `--auth entra` lands: Listen on this hub only. Its
// connection string goes straight into Key Vault (below); no person sees it.
resource hubListenRule 'Microsoft.EventHub/namespaces/eventhubs/authorizationRules@2024-01-01' = {
  parent: eventHub
  name: 'kvlake-listen'
  properties: {
    rights: [
      'Listen'
    ]
  }
}

// The rule Azure Monitor's diagnostic setting streams with. It must be a
// namespace-level rule, and Azure Monitor documents that streaming requires
// Manage, Send and Listen on it.
resource diagnosticsSendRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = {
  parent: eventHubsNamespace
  name: 'azure-monitor-diagnostics'
  properties: {
    rights: [
      'Manage'
      'Send'
      'Listen'
    ]
  }
}

module eventHubsEndpoint 'modules/privateEndpoint.bicep' = {
  name: 'pe-eventhubs'
  params: {
    name: 'pe-${eventHubsNamespace.name}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: eventHubsNamespace.id
    groupId: 'namespace'
    privateDnsZoneIds: zoneIdOf.eventHubs
  }
  dependsOn: [
    vnet
  ]
}

// ---------------------------------------------------------------------------
// ADLS Gen2: the lake
// ---------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    isHnsEnabled: true
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Entra ID only: kvlake and every reader authenticate with an identity.
    // Set true only if something must use an account key or SAS.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // A deleted file or container can be restored for 14 days.
    deleteRetentionPolicy: {
      enabled: true
      days: 14
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 14
    }
  }
}

resource lakeContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: lakeContainerName
  properties: {
    publicAccess: 'None'
  }
}

// kvlake's storage client talks to the blob endpoint; Spark/abfss readers use dfs.
module blobEndpoint 'modules/privateEndpoint.bicep' = {
  name: 'pe-blob'
  params: {
    name: 'pe-${storage.name}-blob'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: storage.id
    groupId: 'blob'
    privateDnsZoneIds: zoneIdOf.blob
  }
  dependsOn: [
    vnet
  ]
}

module dfsEndpoint 'modules/privateEndpoint.bicep' = {
  name: 'pe-dfs'
  params: {
    name: 'pe-${storage.name}-dfs'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: storage.id
    groupId: 'dfs'
    privateDnsZoneIds: zoneIdOf.dfs
  }
  dependsOn: [
    vnet
    blobEndpoint
  ]
}

// ---------------------------------------------------------------------------
// Key Vault: holds kvlake's secret, and its audit log is the data kvlake ingests
// ---------------------------------------------------------------------------

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
    }
  }
}

// Written by Resource Manager from the Listen rule's keys: the value never leaves
// Azure. Rotate by regenerating the rule's keys and redeploying this template.
resource eventHubsConnectionSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: keyVault
  name: 'kvlake-eventhubs-connection-string'
  properties: {
    contentType: 'Event Hubs connection string (Listen on ${eventHubName})'
    value: hubListenRule.listKeys().primaryConnectionString
  }
}

// The data source: this vault's AuditEvent log, streamed to the hub.
resource keyVaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'kvlake-auditevent-to-eventhubs'
  scope: keyVault
  properties: {
    eventHubAuthorizationRuleId: diagnosticsSendRule.id
    eventHubName: eventHub.name
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
  dependsOn: [
    eventHubsNetwork
  ]
}

module keyVaultEndpoint 'modules/privateEndpoint.bicep' = {
  name: 'pe-keyvault'
  params: {
    name: 'pe-${keyVault.name}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: keyVault.id
    groupId: 'vault'
    privateDnsZoneIds: zoneIdOf.keyVault
  }
  dependsOn: [
    vnet
    dfsEndpoint
  ]
}

// ---------------------------------------------------------------------------
// Identity and least-privilege role assignments
// ---------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

// AKS workload identity: tokens of system:serviceaccount:<ns>:<sa> in that cluster
// are exchanged for this identity.
resource aksFederation 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials@2023-01-31' = if (!empty(aksOidcIssuerUrl)) {
  parent: identity
  name: 'aks-${kubernetesNamespace}-${kubernetesServiceAccount}'
  properties: {
    issuer: aksOidcIssuerUrl
    subject: 'system:serviceaccount:${kubernetesNamespace}:${kubernetesServiceAccount}'
    audiences: [
      'api://AzureADTokenExchange'
    ]
  }
}

// Receive from this hub only. Used once kvlake has `--auth entra` (Entra ID for
// the Kafka endpoint); harmless before.
resource receiverOnHub 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventHub.id, identity.id, roles.eventHubsDataReceiver)
  scope: eventHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Read and write the lake container only, not the account.
resource contributorOnLake 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lakeContainer.id, identity.id, roles.storageBlobDataContributor)
  scope: lakeContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Read secret values of this vault (the connection string; later kvlake's own
// Key Vault secret references). No management of keys, secrets or access.
resource secretsUserOnVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, roles.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------
// Optional: container registry
// ---------------------------------------------------------------------------

// Basic tier is reached over its public endpoint (image pulls at start-up only).
// For a registry without public access use Premium with a private endpoint
// (zone privatelink.azurecr.io): not included here.
resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = if (deployContainerRegistry) {
  name: containerRegistryName
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
  }
}

resource acrPullForIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployContainerRegistry) {
  name: guid(resourceGroup().id, containerRegistryName, identity.id, roles.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------
// Optional: Container Apps environment (VNet-integrated, internal)
// ---------------------------------------------------------------------------

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = if (deployContainerAppsEnvironment || deployAlertsTable) {
  name: 'log-${namePrefix}-${uniqueString(resourceGroup().id)}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource containerAppsEnvironment 'Microsoft.App/managedEnvironments@2024-03-01' = if (deployContainerAppsEnvironment) {
  name: containerAppsEnvironmentName
  location: location
  tags: tags
  properties: {
    vnetConfiguration: {
      infrastructureSubnetId: appsSubnetId
      internal: true
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
  dependsOn: [
    vnet
  ]
}

// ---------------------------------------------------------------------------
// Optional: the speed layer's alerts in Log Analytics (Logs Ingestion API)
// ---------------------------------------------------------------------------

module alerts 'modules/alerts.bicep' = if (deployAlertsTable) {
  name: 'kvlake-alerts'
  params: {
    location: location
    tags: tags
    workspaceName: logs.name
    namePrefix: namePrefix
    principalId: identity.properties.principalId
    publisherRoleId: roles.monitoringMetricsPublisher
  }
}

// ---------------------------------------------------------------------------
// Outputs: the values deploy/kubernetes and deploy/containerapps ask for
// ---------------------------------------------------------------------------

output tenantId string = tenant().tenantId
output identityName string = identity.name
output identityResourceId string = identity.id
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output eventHubsNamespaceName string = eventHubsNamespace.name
// serviceBusEndpoint is https://<namespace>.servicebus.windows.net:443/ (or the
// sovereign cloud's host): the Kafka endpoint is the same host, port 9093.
output kafkaBootstrap string = '${split(split(eventHubsNamespace.properties.serviceBusEndpoint, '//')[1], ':')[0]}:9093'
output topic string = eventHub.name
output consumerGroup string = consumerGroup.name
output backfillConsumerGroup string = backfillConsumerGroup.name
output storageAccountName string = storage.name
output lakeUrl string = 'abfss://${lakeContainer.name}@${storage.name}.dfs.${environment().suffixes.storage}/${lakeFolder}'
output keyVaultName string = keyVault.name
output keyVaultUri string = keyVault.properties.vaultUri
output eventHubsSecretName string = eventHubsConnectionSecret.name
output containerRegistryLoginServer string = deployContainerRegistry ? registry.properties.loginServer : ''
output containerAppsEnvironmentId string = deployContainerAppsEnvironment ? containerAppsEnvironment.id : ''
output vnetId string = vnetId
output aksSubnetId string = aksSubnetId
output alertLogsEndpoint string = deployAlertsTable ? alerts.outputs.logsIngestionEndpoint : ''
output alertLogsRule string = deployAlertsTable ? alerts.outputs.dcrImmutableId : ''
output alertLogsStream string = deployAlertsTable ? alerts.outputs.streamName : ''
