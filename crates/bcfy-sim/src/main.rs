//! `bcfy-sim`: run the Broadcastify + Whisper simulator by hand.
//!
//! ```text
//! bcfy-sim --seed 7 --groups 4290-512,4290-1536 --rate 0.5 --faults 'live:429=2~0.05'
//! ```
//! Prints the site, CDN and Whisper URLs, then serves until Ctrl-C.

use std::net::IpAddr;
use std::time::Duration;

use bcfy_sim::{FaultPlan, Simulator};
use clap::Parser;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "bcfy-sim",
    version,
    about = "Broadcastify Calls + Whisper simulator"
)]
struct Args {
    /// Site port (login, live-calls, archives, /v1); 0 = any free port.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Calls CDN port; 0 = any free port.
    #[arg(long, default_value_t = 0)]
    cdn_port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Seed of the feed and of probabilistic faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Talkgroups as `sid-tg`, comma-separated.
    #[arg(long, default_value = "4290-512,4290-1536", value_delimiter = ',')]
    groups: Vec<String>,
    /// Calls per second across all groups.
    #[arg(long, default_value_t = 0.5)]
    rate: f64,
    /// Stop the feed after this many calls (default: endless).
    #[arg(long)]
    total: Option<u64>,
    /// Seconds of history ingested before start.
    #[arg(long, default_value_t = 300)]
    backfill: u64,
    /// Fault plan, e.g. `live:429=2@3,audio:truncate~0.1,session-expiry=50,dual-upload=0.1`.
    #[arg(long, default_value = "")]
    faults: String,
    /// Serve HTTPS (h2 + http/1.1) with a generated certificate (printed as PEM).
    #[arg(long)]
    tls: bool,
    /// Known account as `user:password`.
    #[arg(long, default_value = "demo:demo-password")]
    user: String,
    /// Bearer key for /v1/audio/transcriptions.
    #[arg(long, default_value = "sk-sim")]
    whisper_key: String,
    /// Send no Content-Type on audio.
    #[arg(long)]
    no_audio_content_type: bool,
    /// Throttle audio to this many bytes per second.
    #[arg(long)]
    throttle: Option<u64>,
    /// Probability that a call is ingested late (same `ts` as the last one).
    #[arg(long, default_value_t = 0.05)]
    late: f64,
}

fn parse_group(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .trim()
        .split_once('-')
        .ok_or_else(|| format!("group `{s}`: expected sid-tg"))?;
    Ok((
        a.parse().map_err(|_| format!("group `{s}`: bad sid"))?,
        b.parse()
            .map_err(|_| format!("group `{s}`: bad talkgroup"))?,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let groups = args
        .groups
        .iter()
        .map(|g| parse_group(g))
        .collect::<Result<Vec<_>, _>>()?;
    let plan: FaultPlan = args.faults.parse()?;
    let (user, password) = args
        .user
        .split_once(':')
        .ok_or("--user: expected user:password")?;
    let sim = Simulator::builder()
        .seed(args.seed)
        .groups(groups)
        .calls_per_second(args.rate)
        .total_calls(args.total)
        .backfill(Duration::from_secs(args.backfill))
        .user(user, password)
        .whisper_key(args.whisper_key.clone())
        .faults(plan)
        .tls(args.tls)
        .bind_ip(args.bind)
        .port(args.port)
        .cdn_port(args.cdn_port)
        .audio_content_type((!args.no_audio_content_type).then_some("audio/mp4"))
        .audio_throttle(args.throttle)
        .late_ingest_probability(args.late)
        // A long manual run must not grow memory with every request.
        .record_requests(false)
        .track_served(false)
        .max_stored_calls(Some(200_000))
        .start()
        .await?;
    println!("site     {}", sim.base_url());
    println!("cdn      {}", sim.cdn_url());
    println!("whisper  {}", sim.whisper_url());
    println!("account  {user} / (as given by --user)");
    if let Some(pem) = sim.tls_certificate_pem() {
        println!("certificate (trust this to connect):\n{pem}");
    }
    tokio::signal::ctrl_c().await?;
    println!(
        "served {} calls, ingested {}",
        sim.served_count(),
        sim.ingested_count()
    );
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent_and_parses_the_documented_flags() {
        Args::command().debug_assert();
        let a = Args::try_parse_from([
            "bcfy-sim",
            "--port",
            "8080",
            "--seed",
            "7",
            "--groups",
            "4290-512,9000-7",
            "--rate",
            "2.5",
            "--faults",
            "live:429=2@3",
            "--tls",
        ])
        .unwrap();
        assert_eq!((a.port, a.seed, a.rate, a.tls), (8080, 7, 2.5, true));
        let groups: Vec<_> = a.groups.iter().map(|g| parse_group(g).unwrap()).collect();
        assert_eq!(groups, [(4290, 512), (9000, 7)]);
        assert!(a.faults.parse::<FaultPlan>().is_ok());
        assert!(parse_group("4290").is_err());
    }
}
