// A private DNS zone linked to the VNet that holds kvlake and the private endpoints.

@description('Zone name, e.g. privatelink.blob.core.windows.net.')
param zoneName string

@description('Resource id of the VNet to link.')
param vnetId string

param tags object = {}

resource zone 'Microsoft.Network/privateDnsZones@2024-06-01' = {
  name: zoneName
  location: 'global'
  tags: tags
}

resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = {
  parent: zone
  name: '${last(split(vnetId, '/'))}-link'
  location: 'global'
  tags: tags
  properties: {
    // The endpoints register their own records (DNS zone groups); VMs need not.
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}

// Depends on the link: a private endpoint registered here resolves in the VNet
// as soon as this module has finished.
output id string = zone.id
output linkId string = link.id
