//! The `flagpole` command: parse arguments, then call into the library.

use std::io::Read;

use clap::{Parser, Subcommand};
use flagpole::audit::Actor;
use flagpole::environments::api_keys;
use flagpole::error::Error;
use flagpole::tokens::keys::{self, SigningAlgorithm};
use flagpole::tokens::signing;
use flagpole::webhooks::endpoints;
use flagpole::{admins, db, environments, webhooks, Application, Config};

mod bench;
mod demo;

#[derive(Parser)]
#[command(name = "flagpole", version, about = "Self-hosted feature flags")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the dashboard and APIs (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Fill the database with demo organizations, users and flags. With
    /// `--users`, loads a data set of that size in bulk instead, to measure
    /// Flagpole at scale.
    SeedDemo {
        /// How many flags to create.
        #[arg(long, default_value_t = 24)]
        flags: usize,
        /// Bulk-load this many users (each a member of one organization).
        #[arg(long)]
        users: Option<usize>,
        /// With --users: how many organizations.
        #[arg(long, default_value_t = 1000)]
        organizations: usize,
        /// With --users: targets of each flag whose rule is Some, in Production.
        #[arg(long, default_value_t = 100)]
        targets_per_flag: usize,
    },
    /// Measure evaluation and token signing speed on this machine.
    Bench {
        #[arg(long, default_value_t = 1000)]
        flags: usize,
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 1000)]
        organizations: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Manage an environment's API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Manage an environment's token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage an environment's webhook endpoints.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Manage environments.
    Environments {
        #[command(subcommand)]
        command: EnvironmentsCommand,
    },
    /// Manage dashboard accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key and print its secret (shown only this once).
    Create {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        name: String,
        /// publishable (a pk_ key: evaluation only, for browsers),
        /// evaluation (sessions, evaluation, OFREP, the SDK rule set),
        /// environment (also this environment's rules) or admin (also flags,
        /// the directory and the audit log).
        #[arg(long, default_value = "evaluation", value_parser = ["publishable", "evaluation", "environment", "admin"])]
        scope: String,
    },
}

#[derive(Subcommand)]
enum EnvironmentsCommand {
    /// Set the browser origins allowed to call an environment with its keys
    /// (replacing the list; an empty list allows none).
    SetOrigins {
        #[arg(long)]
        environment: String,
        /// Comma-separated, e.g. https://app.example.com,http://localhost:3000.
        #[arg(long, default_value = "")]
        origins: String,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Add an endpoint and print its signing secret (shown only this once).
    Create {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        url: String,
        /// Comma-separated: flag.created, flag.updated, flag.deleted, flag.rule_updated (default: all).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Start signing with a new key; the old one stays published until its tokens expire.
    Rotate {
        #[arg(long)]
        environment: String,
        /// ES256 (default: the current key's), RS256 or EdDSA.
        #[arg(long, value_parser = ["ES256", "RS256", "EdDSA"])]
        algorithm: Option<String>,
        /// Sign with the new keys at once instead of after
        /// FLAGPOLE_KEY_PUBLICATION_DELAY: for a compromised key. Verifiers
        /// that cached the key set fail until they refetch it.
        #[arg(long)]
        now: bool,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print a new one-time link that creates the first owner (while no
    /// admin exists); it works once, for an hour.
    SetupLink,
    /// Create an admin; the password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, default_value = "owner", value_parser = ["owner", "editor", "viewer"])]
        role: String,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,flagpole=info".into()),
        )
        .init();
    let cli = Cli::parse();
    if let Some(Command::Bench {
        flags,
        users,
        organizations,
        seconds,
    }) = &cli.command
    {
        return bench::run(&bench::BenchOptions {
            flags: *flags,
            users: (*users).max(1),
            organizations: (*organizations).max(1),
            seconds: *seconds,
        });
    }
    let config = Config::from_env()?;
    actix_web::rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Bench { .. } => Ok(()),
            Command::Migrate => {
                let url = db::DatabaseUrl::parse(&config.database_url)?;
                flagpole::prepare_database(&url, 1).await?;
                println!("migrations applied");
                Ok(())
            }
            Command::ApiKey {
                command:
                    ApiKeyCommand::Create {
                        environment,
                        name,
                        scope,
                    },
            } => {
                let mut conn = open(&config).await?;
                let env = environments::by_slug(&mut conn, &environment)
                    .map_err(|_| anyhow::anyhow!("no environment has the slug {environment:?}"))?;
                let scope = api_keys::KeyScope::parse(&scope)
                    .ok_or_else(|| anyhow::anyhow!("unknown scope {scope:?}"))?;
                let (_, secret) = api_keys::create(&mut conn, &cli_actor(), &env.id, &name, scope)
                    .map_err(cli_error)?;
                println!("{secret}");
                Ok(())
            }
            Command::Environments {
                command:
                    EnvironmentsCommand::SetOrigins {
                        environment,
                        origins,
                    },
            } => {
                let mut conn = open(&config).await?;
                let env = environments::by_slug(&mut conn, &environment)
                    .map_err(|_| anyhow::anyhow!("no environment has the slug {environment:?}"))?;
                let input = environments::EnvironmentInput {
                    name: env.name.clone(),
                    slug: env.slug.to_string(),
                    color: env.color.clone(),
                    require_confirmation: env.require_confirmation,
                    allowed_origins: Some(origins),
                };
                let env = environments::update(&mut conn, &cli_actor(), &env.id, &input)
                    .map_err(cli_error)?;
                let origins: Vec<&str> = env.origins().collect();
                if origins.is_empty() {
                    println!("{} allows no browser origin", env.name);
                } else {
                    println!("{} allows {}", env.name, origins.join(", "));
                }
                Ok(())
            }
            Command::Webhooks {
                command:
                    WebhooksCommand::Create {
                        environment,
                        url,
                        events,
                        description,
                    },
            } => {
                let mut conn = open(&config).await?;
                let env = environments::by_slug(&mut conn, &environment)
                    .map_err(|_| anyhow::anyhow!("no environment has the slug {environment:?}"))?;
                let events = if events.is_empty() {
                    webhooks::EVENTS.iter().map(|e| e.to_string()).collect()
                } else {
                    events.iter().map(|e| e.trim().to_string()).collect()
                };
                let input = endpoints::EndpointInput {
                    url,
                    description,
                    events,
                };
                let sealer = keys::KeySealer::new(&config.secret_key);
                let (endpoint, secret) =
                    endpoints::create(&mut conn, &sealer, &cli_actor(), &env.id, &input, &config.webhook_allow)
                        .map_err(cli_error)?;
                tracing::info!(id = %endpoint.id, url = %endpoint.url, events = %endpoint.events, "webhook endpoint added");
                println!("{secret}");
                Ok(())
            }
            Command::Keys {
                command:
                    KeysCommand::Rotate {
                        environment,
                        algorithm,
                        now,
                    },
            } => {
                let mut conn = open(&config).await?;
                let env = environments::by_slug(&mut conn, &environment)
                    .map_err(|_| anyhow::anyhow!("no environment has the slug {environment:?}"))?;
                let sealer = keys::KeySealer::new(&config.secret_key);
                let algorithm = algorithm.as_deref().and_then(SigningAlgorithm::parse);
                let delay = if now {
                    std::time::Duration::ZERO
                } else {
                    config.key_publication_delay
                };
                let rotation = signing::rotate(
                    &mut conn,
                    &sealer,
                    &cli_actor(),
                    &env.id,
                    algorithm,
                    delay,
                    config.retired_key_publication(),
                )
                .map_err(cli_error)?;
                let when = if now {
                    "now".to_string()
                } else {
                    format!(
                        "from {} (published now, so verifiers have them first)",
                        rotation.takes_over_at.human_seconds()
                    )
                };
                println!(
                    "{} signs with {} key {} (and RS256 key {} for the WorkOS SDKs) {when}",
                    env.name,
                    rotation.tokens.algorithm,
                    rotation.tokens.id,
                    rotation.workos.id
                );
                Ok(())
            }
            Command::SeedDemo {
                flags,
                users: Some(users),
                organizations,
                targets_per_flag,
            } => {
                let url = db::DatabaseUrl::parse(&config.database_url)?;
                let pool = flagpole::prepare_database(&url, 1).await?;
                let mut conn = pool.get()?;
                let spec = flagpole::loader::LoadSpec {
                    users,
                    organizations,
                    flags,
                    targets_per_flag,
                };
                let loaded = flagpole::loader::load(&mut conn, &spec, |what| {
                    eprintln!("loading {what}");
                })
                .map_err(cli_error)?;
                println!(
                    "loaded {} users, {} organizations, {} memberships, {} flags, {} rules and {} targets in {:.1} s",
                    loaded.users,
                    loaded.organizations,
                    loaded.memberships,
                    loaded.flags,
                    loaded.rules,
                    loaded.targets,
                    loaded.seconds
                );
                Ok(())
            }
            Command::SeedDemo { flags, .. } => {
                let url = db::DatabaseUrl::parse(&config.database_url)?;
                let pool = flagpole::prepare_database(&url, 1).await?;
                let mut conn = pool.get()?;
                let counts = demo::seed(&mut conn, flags)
                    .map_err(|e| anyhow::anyhow!("seeding failed: {e}"))?;
                println!(
                    "added {} organizations, {} users and {} flags",
                    counts.organizations, counts.users, counts.flags
                );
                Ok(())
            }
            Command::Admin {
                command: AdminCommand::SetupLink,
            } => {
                let mut conn = open(&config).await?;
                if admins::count(&mut conn).map_err(cli_error)? > 0 {
                    anyhow::bail!("an admin exists already: sign in, or use `flagpole admin create`");
                }
                let token = admins::setup::issue(&mut conn).map_err(cli_error)?;
                println!("{}/setup?token={token}", config.public_url);
                Ok(())
            }
            Command::Admin {
                command:
                    AdminCommand::Create {
                        email,
                        password_stdin,
                        role,
                    },
            } => {
                if !password_stdin {
                    anyhow::bail!("pass --password-stdin and write the password to standard input");
                }
                let mut password = String::new();
                std::io::stdin().read_to_string(&mut password)?;
                let password = password.trim_end_matches(['\r', '\n']).to_string();
                let role = admins::Role::parse(&role).unwrap_or(admins::Role::Owner);
                let url = db::DatabaseUrl::parse(&config.database_url)?;
                let pool = flagpole::prepare_database(&url, 1).await?;
                let mut conn = pool.get()?;
                let admin =
                    admins::create(&mut conn, &cli_actor(), &email, &password, role).map_err(cli_error)?;
                println!("created {} ({})", admin.email, admin.role);
                Ok(())
            }
        }
    })
}

/// A migrated database connection for a one-off command.
async fn open(config: &Config) -> anyhow::Result<db::PooledConn> {
    let url = db::DatabaseUrl::parse(&config.database_url)?;
    let pool = flagpole::prepare_database(&url, 1).await?;
    Ok(pool.get()?)
}

/// Who the audit trail names for changes made on the command line.
fn cli_actor() -> Actor {
    Actor::system("cli")
}

/// An error as the command line tells it: each field's problem, or the message.
fn cli_error(err: Error) -> anyhow::Error {
    match err.field_errors() {
        Some(errors) => anyhow::anyhow!(
            "{}",
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        None => anyhow::anyhow!("{err}"),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let public_url = config.public_url.clone();
    let app = Application::build(config).await?;
    tracing::info!("Flagpole is listening; open {public_url}");
    if let Some(url) = app.setup_url() {
        tracing::warn!("No admin exists yet. Create the first one with this one-time link: {url}");
        println!("\n  Create the first admin: {url}\n");
    }
    app.run_until_stopped().await?;
    Ok(())
}
