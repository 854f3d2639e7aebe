//! The simulated estate: vaults with their secrets, keys and certificates, the identities
//! that call them, and the operation mix. Built once per generator from the seed.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::text::{uuid_string, uuid_v4};

/// What an operation acts on, which decides the URL path of `properties.id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Secret,
    Key,
    Certificate,
    /// The vault itself: no object path (`Authentication`, `VaultGet`, ...).
    Vault,
}

impl Target {
    /// The URL collection segment, e.g. `secrets`.
    pub(crate) fn collection(self) -> &'static str {
        match self {
            Target::Secret => "secrets",
            Target::Key => "keys",
            Target::Certificate => "certificates",
            Target::Vault => "",
        }
    }

    /// Base object names; indexes past the end get a numeric suffix, so every index
    /// names a distinct object.
    fn names(self) -> &'static [&'static str] {
        match self {
            Target::Secret => SECRET_NAMES,
            Target::Key => KEY_NAMES,
            Target::Certificate => CERTIFICATE_NAMES,
            Target::Vault => &["vault"],
        }
    }

    fn code(self) -> u64 {
        match self {
            Target::Secret => 1,
            Target::Key => 2,
            Target::Certificate => 3,
            Target::Vault => 4,
        }
    }
}

/// One Key Vault operation of the normal traffic mix.
#[derive(Debug)]
pub(crate) struct OpDef {
    pub name: &'static str,
    /// Relative share of normal traffic.
    pub weight: f64,
    pub target: Target,
    /// A list operation: no object name in the path.
    pub list: bool,
    /// Path suffix after the object version (`decrypt`, `wrapkey`, ...).
    pub action: Option<&'static str>,
    /// Typical server-side duration in milliseconds.
    pub base_ms: f64,
}

const fn op(name: &'static str, weight: f64, target: Target, base_ms: f64) -> OpDef {
    OpDef {
        name,
        weight,
        target,
        list: false,
        action: None,
        base_ms,
    }
}

const fn list(name: &'static str, weight: f64, target: Target, base_ms: f64) -> OpDef {
    OpDef {
        name,
        weight,
        target,
        list: true,
        action: None,
        base_ms,
    }
}

const fn action(
    name: &'static str,
    weight: f64,
    target: Target,
    action: &'static str,
    base_ms: f64,
) -> OpDef {
    OpDef {
        name,
        weight,
        target,
        list: false,
        action: Some(action),
        base_ms,
    }
}

/// The normal operation mix. Sensitive operations (purge, backup, vault delete) are left
/// out on purpose, so that an injected one is the only one.
pub(crate) const OPS: &[OpDef] = &[
    op("SecretGet", 35.0, Target::Secret, 12.0),
    list("SecretList", 6.0, Target::Secret, 40.0),
    action("KeyDecrypt", 4.0, Target::Key, "decrypt", 18.0),
    action("KeyEncrypt", 3.0, Target::Key, "encrypt", 15.0),
    action("KeyUnwrap", 5.0, Target::Key, "unwrapkey", 16.0),
    action("KeyWrap", 4.0, Target::Key, "wrapkey", 14.0),
    action("KeySign", 2.5, Target::Key, "sign", 20.0),
    action("KeyVerify", 1.5, Target::Key, "verify", 10.0),
    op("KeyGet", 8.0, Target::Key, 10.0),
    op("CertificateGet", 5.0, Target::Certificate, 14.0),
    list("CertificateList", 1.0, Target::Certificate, 45.0),
    op("VaultGet", 5.0, Target::Vault, 30.0),
    op("Authentication", 8.0, Target::Vault, 2.0),
    op("SecretSet", 3.0, Target::Secret, 25.0),
    list("KeyList", 2.0, Target::Key, 35.0),
    // On Sentinel's list of sensitive operations, like purge and backup: only injected.
    op("SecretDelete", 0.0, Target::Secret, 30.0),
    action("KeyCreate", 0.3, Target::Key, "create", 120.0),
    action(
        "CertificateCreate",
        0.2,
        Target::Certificate,
        "create",
        300.0,
    ),
    action("KeyRotate", 0.1, Target::Key, "rotate", 150.0),
    op("CertificateUpdate", 0.1, Target::Certificate, 60.0),
];

/// Index in [`OPS`] of the operation called `name`.
pub(crate) fn op_index(name: &str) -> Option<usize> {
    OPS.iter().position(|op| op.name == name)
}

const SECRET_NAMES: &[&str] = &[
    "db-password",
    "api-key",
    "storage-connection-string",
    "sql-admin-password",
    "redis-access-key",
    "jwt-signing-secret",
    "smtp-password",
    "client-secret",
    "servicebus-connection",
    "cosmos-primary-key",
    "eventhub-connection",
    "github-token",
    "stripe-api-key",
    "sendgrid-key",
    "ldap-bind-password",
    "oauth-client-secret",
];
const KEY_NAMES: &[&str] = &[
    "data-encryption-key",
    "tde-protector",
    "cmk-storage",
    "signing-key",
    "jwt-key",
    "backup-wrap-key",
    "pii-tokenization",
];
const CERTIFICATE_NAMES: &[&str] = &[
    "api-contoso-com",
    "wildcard-contoso-com",
    "mtls-client",
    "gateway-tls",
    "code-signing",
];

/// Appends the name of object `index` of `target`.
pub(crate) fn push_object_name(out: &mut Vec<u8>, target: Target, index: usize) {
    let names = target.names();
    let name = names.get(index % names.len()).copied().unwrap_or("object");
    out.extend_from_slice(name.as_bytes());
    let round = index / names.len();
    if round > 0 {
        out.push(b'-');
        crate::text::push_u64(out, (round + 1) as u64);
    }
}

const APPS: &[&str] = &[
    "payments", "identity", "data", "web", "ml", "shared", "ops", "crm",
];
const ENVS: &[&str] = &["prod", "dev", "test", "stg"];
const LOCATIONS: &[&str] = &["westeurope", "northeurope", "eastus2", "uksouth"];
const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yara",
];
const LAST_NAMES: &[&str] = &[
    "smith", "jones", "garcia", "muller", "rossi", "dubois", "novak", "tanaka", "silva",
    "kowalski", "andersen", "murphy", "costa", "schmidt", "lee", "martin", "nagy", "horvat",
    "berg", "ivanova",
];
const USER_CLIENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "AzureCLI/2.61.0 (MSI) azsdk-python-keyvault-secrets/4.8.0 Python/3.11.8 (Windows-10-10.0.22631-SP0)",
    "PSVersion/v7.4.1 PSCompatibleVersions/v1.0,v2.0,v3.0,v4.0,v5.0,v5.1,v6.0,v7.0 PSEdition/Core OS/Microsoft Windows 10.0.22631",
];
const APP_CLIENTS: &[&str] = &[
    "azsdk-net-Security.KeyVault.Secrets/4.5.0 (.NET 6.0.25; Linux 5.15.0-1052-azure #60-Ubuntu SMP)",
    "azsdk-net-Security.KeyVault.Keys/4.5.0 (.NET 8.0.1; Microsoft Windows 10.0.20348)",
    "azsdk-python-keyvault-secrets/4.7.0 Python/3.11.4 (Linux-5.15.0-1041-azure-x86_64-with-glibc2.35)",
    "azsdk-java-azure-security-keyvault-secrets/4.7.3 (17.0.9; Linux; 5.15.0-1053-azure)",
    "azsdk-go-azsecrets/v1.1.0 (go1.21.5; linux)",
    "FxVersion/4.8.9195.0 OSName/Windows OSVersion/Microsoft.Windows.10.0.17763. Microsoft.Azure.KeyVault.KeyVaultClient/3.0.5",
];
const API_VERSIONS: &[&str] = &["7.4", "7.4", "7.5", "7.3", "7.2", "2016-10-01"];
/// Public client application ids users sign in with (Azure portal, Azure CLI, Azure PowerShell).
const USER_APP_IDS: &[&str] = &[
    "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
    "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
    "1950a258-227b-4e31-a9cf-717495945fc2",
];

/// Who an identity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    User,
    ServicePrincipal,
    ManagedIdentity,
}

/// A caller: its claims, usual IP addresses and vaults.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub kind: Kind,
    pub oid: String,
    pub appid: String,
    /// `upn` and `unique_name` of a user.
    pub upn: Option<String>,
    /// `xms_mirid` of a managed identity.
    pub mirid: Option<String>,
    pub appidacr: &'static str,
    /// The `xms_az_nwperimid` claim, already rendered as a JSON array.
    pub perimeter: Option<String>,
    /// Usual IP addresses, the first one most used.
    pub ips: Vec<[u8; 4]>,
    /// Vaults it calls, the first one most used.
    pub vaults: Vec<usize>,
    pub client_info: &'static str,
    pub api_version: &'static str,
}

/// The order of a record's keys; each vault's diagnostic setting uses one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyOrder {
    /// The order of the Event Hubs export.
    EventHub,
    /// The order of the storage-account archive, with an extra `location` field.
    Archive,
}

/// A key vault and its objects.
#[derive(Clone, Debug)]
pub(crate) struct Vault {
    pub name: String,
    /// `https://<name>.vault.azure.net`
    pub host: String,
    pub resource_id: String,
    pub location: &'static str,
    pub rbac: bool,
    pub order: KeyOrder,
    pub secrets: usize,
    pub keys: usize,
    pub certificates: usize,
    /// Expected share of normal traffic that lands on this vault.
    pub share: f64,
    /// Identities calling this vault, weighted by how much of their traffic lands here.
    pub callers: Sampler,
}

impl Vault {
    /// How many objects of `target` it holds.
    pub(crate) fn objects(&self, target: Target) -> usize {
        match target {
            Target::Secret => self.secrets,
            Target::Key => self.keys,
            Target::Certificate => self.certificates,
            Target::Vault => 1,
        }
    }
}

/// Weighted choice among `items` by cumulative weights.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sampler {
    cumulative: Vec<f64>,
    items: Vec<usize>,
}

impl Sampler {
    pub(crate) fn new(weighted: impl IntoIterator<Item = (usize, f64)>) -> Sampler {
        let mut sampler = Sampler::default();
        let mut total = 0.0;
        for (item, weight) in weighted {
            if weight > 0.0 {
                total += weight;
                sampler.cumulative.push(total);
                sampler.items.push(item);
            }
        }
        sampler
    }

    /// A weighted random item, or `None` when empty.
    pub(crate) fn sample(&self, rng: &mut ChaCha8Rng) -> Option<usize> {
        let total = *self.cumulative.last()?;
        let x = rng.random::<f64>() * total;
        let at = self.cumulative.partition_point(|&c| c <= x);
        self.items.get(at.min(self.items.len() - 1)).copied()
    }
}

/// Everything the traffic is made of.
#[derive(Debug)]
pub(crate) struct World {
    pub tenant: String,
    pub vaults: Vec<Vault>,
    /// The population first, then identities created by attacks.
    pub identities: Vec<Identity>,
    /// Number of identities of the normal population.
    pub population: usize,
    /// Relative weight of each population identity in normal traffic.
    pub weights: Vec<f64>,
    pub callers: Sampler,
    pub ops: Sampler,
    /// Mixed into object versions so that two seeds differ.
    pub salt: u64,
}

/// A uniform index below `n` (`n` > 0).
pub(crate) fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    if n <= 1 { 0 } else { rng.random_range(0..n) }
}

/// `true` with probability `p`.
pub(crate) fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// A random version-4 UUID.
pub(crate) fn random_uuid(rng: &mut ChaCha8Rng, upper: bool) -> String {
    uuid_string(uuid_v4(rng.random()), upper)
}

/// Probability that `identity` calls its `position`-th vault.
pub(crate) fn vault_probability(vault_count: usize, position: usize) -> f64 {
    match (vault_count, position) {
        (0 | 1, _) => 1.0,
        (_, 0) => 0.7,
        (n, _) => 0.3 / (n - 1) as f64,
    }
}

/// Probability that an identity with `ip_count` addresses calls from its `position`-th one.
fn ip_probability(ip_count: usize, position: usize) -> f64 {
    vault_probability(ip_count, position)
}

/// Picks the vault of one call of `identity`.
pub(crate) fn pick_vault(rng: &mut ChaCha8Rng, identity: &Identity) -> usize {
    pick_weighted_position(rng, identity.vaults.len(), vault_probability)
        .and_then(|at| identity.vaults.get(at).copied())
        .unwrap_or(0)
}

/// Picks the source IP of one call of `identity`.
pub(crate) fn pick_ip(rng: &mut ChaCha8Rng, identity: &Identity) -> [u8; 4] {
    pick_weighted_position(rng, identity.ips.len(), ip_probability)
        .and_then(|at| identity.ips.get(at).copied())
        .unwrap_or([10, 0, 0, 1])
}

fn pick_weighted_position(
    rng: &mut ChaCha8Rng,
    n: usize,
    p: fn(usize, usize) -> f64,
) -> Option<usize> {
    if n <= 1 {
        return (n == 1).then_some(0);
    }
    let mut x = rng.random::<f64>();
    for at in 0..n {
        x -= p(n, at);
        if x < 0.0 {
            return Some(at);
        }
    }
    Some(n - 1)
}

/// Picks an object index of a vault holding `n` objects, skewed toward the first ones.
pub(crate) fn pick_object(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let u = rng.random::<f64>();
    ((n as f64 * u * u * u) as usize).min(n.saturating_sub(1))
}

/// A fresh identity of `kind`, `index` keeps names unique.
pub(crate) fn new_identity(
    rng: &mut ChaCha8Rng,
    kind: Kind,
    index: usize,
    subscriptions: &[String],
    vault_sampler: &Sampler,
) -> Identity {
    let oid = random_uuid(rng, false);
    let (appid, upn, mirid, appidacr, client_info) = match kind {
        Kind::User => {
            let first = FIRST_NAMES[index % FIRST_NAMES.len()];
            let last = LAST_NAMES[(index / FIRST_NAMES.len()) % LAST_NAMES.len()];
            let round = index / (FIRST_NAMES.len() * LAST_NAMES.len());
            let upn = if round == 0 {
                format!("{first}.{last}@contoso.com")
            } else {
                format!("{first}.{last}{round}@contoso.com")
            };
            let app = USER_APP_IDS[below(rng, USER_APP_IDS.len())].to_owned();
            (
                app,
                Some(upn),
                None,
                "0",
                USER_CLIENTS[below(rng, USER_CLIENTS.len())],
            )
        }
        Kind::ServicePrincipal => {
            let acr = if chance(rng, 0.7) { "1" } else { "2" };
            (
                random_uuid(rng, false),
                None,
                None,
                acr,
                APP_CLIENTS[below(rng, APP_CLIENTS.len())],
            )
        }
        Kind::ManagedIdentity => {
            let subscription = subscriptions
                .get(below(rng, subscriptions.len()))
                .map_or("", String::as_str);
            let app = APPS[below(rng, APPS.len())];
            let env = ENVS[below(rng, ENVS.len())];
            let mirid = format!(
                "/subscriptions/{subscription}/resourcegroups/rg-{app}-{env}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-{app}-{env}-{index}"
            );
            (
                random_uuid(rng, false),
                None,
                Some(mirid),
                "2",
                APP_CLIENTS[below(rng, APP_CLIENTS.len())],
            )
        }
    };
    let perimeter = chance(rng, 0.15).then(|| {
        let mut ids = vec![random_uuid(rng, false)];
        if chance(rng, 0.3) {
            ids.push(random_uuid(rng, false));
        }
        let quoted: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
        format!("[{}]", quoted.join(","))
    });
    let mut ips: Vec<[u8; 4]> = Vec::new();
    let ip_count = 1 + usize::from(chance(rng, 0.5)) + usize::from(chance(rng, 0.3));
    while ips.len() < ip_count {
        let ip = random_ip(rng);
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    let mut vaults: Vec<usize> = Vec::new();
    let vault_count = 1 + usize::from(chance(rng, 0.4)) + usize::from(chance(rng, 0.25));
    for _ in 0..vault_count * 4 {
        if vaults.len() == vault_count {
            break;
        }
        if let Some(v) = vault_sampler.sample(rng)
            && !vaults.contains(&v)
        {
            vaults.push(v);
        }
    }
    if vaults.is_empty() {
        vaults.push(0);
    }
    Identity {
        kind,
        oid,
        appid,
        upn,
        mirid,
        appidacr,
        perimeter,
        ips,
        vaults,
        client_info,
        api_version: API_VERSIONS[below(rng, API_VERSIONS.len())],
    }
}

/// A usual caller address: mostly private, some public-looking (documentation ranges).
/// Never in 192.0.2.0/24, which is kept for attacks.
fn random_ip(rng: &mut ChaCha8Rng) -> [u8; 4] {
    let roll = rng.random::<f64>();
    let host = rng.random_range(1..=254u8);
    if roll < 0.75 {
        [10, rng.random_range(0..=31u8), rng.random(), host]
    } else if roll < 0.875 {
        [203, 0, 113, host]
    } else {
        [198, 51, 100, host]
    }
}

impl World {
    /// Builds the estate of `vault_count` vaults and `identity_count` identities.
    pub(crate) fn build(rng: &mut ChaCha8Rng, vault_count: usize, identity_count: usize) -> World {
        let tenant = random_uuid(rng, false);
        let subscriptions: Vec<String> = (0..3).map(|_| random_uuid(rng, false)).collect();
        let mut vaults: Vec<Vault> = (0..vault_count)
            .map(|i| {
                let app = APPS[i % APPS.len()];
                let env = ENVS[(i / APPS.len()) % ENVS.len()];
                let name = format!("kv-{app}-{env}-{:02}", i + 1);
                let subscription = subscriptions.get(i % subscriptions.len()).map_or("", String::as_str);
                let resource_id = format!(
                    "/SUBSCRIPTIONS/{}/RESOURCEGROUPS/RG-{}-{}/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/{}",
                    subscription.to_uppercase(),
                    app.to_uppercase(),
                    env.to_uppercase(),
                    name.to_uppercase()
                );
                Vault {
                    host: format!("https://{name}.vault.azure.net"),
                    name,
                    resource_id,
                    location: LOCATIONS[below(rng, LOCATIONS.len())],
                    rbac: chance(rng, 0.8),
                    order: if i % 4 == 3 { KeyOrder::Archive } else { KeyOrder::EventHub },
                    secrets: rng.random_range(5..=60),
                    keys: rng.random_range(2..=15),
                    certificates: rng.random_range(1..=8),
                    share: 0.0,
                    callers: Sampler::default(),
                }
            })
            .collect();
        // Some vaults are much busier than others.
        let vault_popularity =
            Sampler::new((0..vault_count).map(|v| (v, 1.0 / (v as f64 + 1.0).powf(0.6))));

        let users = (identity_count * 2).div_ceil(5);
        let principals = (identity_count * 7)
            .div_ceil(20)
            .min(identity_count - users);
        let mut identities = Vec::with_capacity(identity_count);
        for i in 0..identity_count {
            let kind = if i < users {
                Kind::User
            } else if i < users + principals {
                Kind::ServicePrincipal
            } else {
                Kind::ManagedIdentity
            };
            identities.push(new_identity(
                rng,
                kind,
                i,
                &subscriptions,
                &vault_popularity,
            ));
        }
        // Every vault has at least one caller.
        for v in 0..vault_count {
            if !identities
                .iter()
                .any(|identity| identity.vaults.contains(&v))
            {
                let at = below(rng, identities.len());
                if let Some(identity) = identities.get_mut(at) {
                    identity.vaults.push(v);
                }
            }
        }
        // Zipf-like activity over a random ranking; automation calls more than people.
        let mut ranks: Vec<usize> = (0..identity_count).collect();
        for i in (1..ranks.len()).rev() {
            ranks.swap(i, below(rng, i + 1));
        }
        let weights: Vec<f64> = identities
            .iter()
            .zip(&ranks)
            .map(|(identity, &rank)| {
                let factor = match identity.kind {
                    Kind::User => 1.0,
                    Kind::ServicePrincipal => 3.0,
                    Kind::ManagedIdentity => 4.0,
                };
                factor / (rank as f64 + 1.0).powf(0.9)
            })
            .collect();
        let total: f64 = weights.iter().sum();
        for (v, vault) in vaults.iter_mut().enumerate() {
            let mut members = Vec::new();
            for (i, identity) in identities.iter().enumerate() {
                if let Some(position) = identity.vaults.iter().position(|&x| x == v) {
                    members.push((
                        i,
                        weights[i] * vault_probability(identity.vaults.len(), position),
                    ));
                }
            }
            vault.share = members.iter().map(|&(_, w)| w).sum::<f64>() / total;
            vault.callers = Sampler::new(members);
        }
        World {
            tenant,
            vaults,
            population: identities.len(),
            identities,
            callers: Sampler::new(weights.iter().copied().enumerate()),
            weights,
            ops: Sampler::new(OPS.iter().map(|op| op.weight).enumerate()),
            salt: rng.random(),
        }
    }

    /// Subscription ids, recovered from the vaults' resource ids (for new identities).
    pub(crate) fn subscriptions(&self) -> Vec<String> {
        let mut subscriptions: Vec<String> = Vec::new();
        for vault in &self.vaults {
            if let Some(sub) = vault.resource_id.split('/').nth(2) {
                let sub = sub.to_lowercase();
                if !subscriptions.contains(&sub) {
                    subscriptions.push(sub);
                }
            }
        }
        subscriptions
    }

    /// A 32-hex-digit object version, stable for (vault, target, object).
    pub(crate) fn push_version(
        &self,
        out: &mut Vec<u8>,
        vault: usize,
        target: Target,
        object: usize,
    ) {
        let seed = self.salt ^ ((vault as u64) << 40) ^ (target.code() << 32) ^ object as u64;
        crate::text::push_hex(out, splitmix64(seed), 16);
        crate::text::push_hex(out, splitmix64(seed ^ 0x5851_f42d_4c95_7f2d), 16);
    }
}

/// The SplitMix64 finaliser: a cheap, well-mixed hash of a 64-bit value.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
