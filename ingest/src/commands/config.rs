//! `kvlake config show`: the effective settings of `hot` after layering, as TOML, with
//! every secret printed as `[REDACTED]` or as the reference it was given as.

use anyhow::{Context, Result};

use crate::cli::HotArgs;
use crate::identity::{SecretRef, SecretStore};
use crate::settings;

pub async fn show(args: &HotArgs) -> Result<()> {
    let s = settings::load(args.config.as_deref(), args)?;
    let text = toml::to_string_pretty(&s).context("cannot print the settings")?;
    println!("# effective settings: defaults < TOML file < KVLAKE_* environment < flags");
    println!("# secrets print as [REDACTED], references as written (env:, file:, Key Vault URL)");
    print!("{text}");

    // What the settings turn into. Env and file references are read here (their values
    // never print); Key Vault references are not fetched, so this needs no network.
    let mut resolved = s.clone();
    let store = SecretStore::new(reqwest::Client::new(), None);
    let mut from_vault = false;
    if let Some(v) = &s.eventhubs_connection_string {
        match SecretRef::parse("--eventhubs-connection-string", v)? {
            SecretRef::KeyVault(_) => from_vault = true,
            r => {
                resolved.eventhubs_connection_string =
                    Some(store.fetch("--eventhubs-connection-string", &r).await?)
            }
        }
    }
    let id = settings::identity_options(&s)?;
    println!("\n[derived]");
    println!("credential = {:?}", id.kind.name());
    println!(
        "secret_refresh = {:?}",
        humantime::format_duration(settings::secret_refresh(&s)?).to_string()
    );
    println!(
        "storage_auth = {:?}",
        format!("{:?}", settings::storage_auth(&s)?).to_lowercase()
    );
    if from_vault && (s.brokers.is_none() || s.topic.is_none()) {
        println!(
            "# brokers and topic come from the Key Vault connection string at start-up (not fetched here)"
        );
        return Ok(());
    }
    if from_vault {
        // Stand-in value: only its presence matters for what follows, not its text.
        resolved.eventhubs_connection_string = Some(crate::secret::Secret::new(
            "Endpoint=sb://from-key-vault.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=k",
        ));
    }
    let brokers = resolved.brokers.clone().unwrap_or_default();
    let auth = settings::kafka_auth(&resolved, &brokers)?;
    let (cfg, lake, _) = settings::validate(resolved.clone())?;
    let auth_name = match auth {
        settings::KafkaAuth::ConnectionString => "connection-string",
        settings::KafkaAuth::Entra => "entra",
        settings::KafkaAuth::None => "none",
    };
    println!("kafka_auth = {auth_name:?}");
    if auth == settings::KafkaAuth::Entra {
        println!(
            "kafka_token_scope = {:?}",
            settings::kafka_token_scope(&resolved, &cfg.kafka["bootstrap.servers"])?
        );
    }
    println!("topic = {:?}", cfg.topic);
    println!("lake = {:?}", lake.url.split('?').next().unwrap_or(""));
    println!("\n[derived.kafka]");
    for (k, v) in &cfg.kafka {
        let v = if kvlake_hotpath::config::is_secret_property(k) {
            "[REDACTED]"
        } else {
            v.as_str()
        };
        println!("{:?} = {:?}", k, v);
    }
    Ok(())
}
