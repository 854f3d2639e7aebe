// A private endpoint for one sub-resource (groupId) of a PaaS resource, with its
// DNS records registered in the given private DNS zones.

@description('Name of the private endpoint.')
param name string

@description('Azure region; must be the VNet\'s region.')
param location string

@description('Resource id of the subnet the endpoint\'s NIC goes into.')
param subnetId string

@description('Resource id of the resource to reach privately.')
param targetResourceId string

@description('Sub-resource: namespace (Event Hubs), blob, dfs (Storage), vault (Key Vault).')
param groupId string

@description('Private DNS zones to register the endpoint in; empty when DNS is managed elsewhere (e.g. by Azure Policy in a hub).')
param privateDnsZoneIds array = []

param tags object = {}

resource endpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetResourceId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

resource dnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = if (!empty(privateDnsZoneIds)) {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      for zoneId in privateDnsZoneIds: {
        name: replace(last(split(zoneId, '/')), '.', '-')
        properties: {
          privateDnsZoneId: zoneId
        }
      }
    ]
  }
}

output id string = endpoint.id
