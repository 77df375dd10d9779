//! `jingteng rta serve`: the RTA endpoint in local mode, from the audiences delivered to
//! a media party, rebuilt and swapped in when deliveries or data-rights requests change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use jingteng_audience::Store;
use jingteng_audience::rta::{LiveIndex, RtaIndex};

use crate::RtaServeArgs;
use crate::node::shutdown_signal;

/// Serves until Ctrl-C or SIGTERM.
pub(crate) fn serve(args: RtaServeArgs) -> anyhow::Result<()> {
    let spec_dir = args.spec.parent().unwrap_or(Path::new(".")).to_path_buf();
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| spec_dir.join(".jingteng"));
    let collab = jingteng_match::read_spec(&args.spec)?;
    let source = Source {
        store: Store::new(&state),
        collab,
        spec_dir,
        state,
        party: args.party.clone(),
    };
    let (index, fingerprint) = source.build()?;
    let live = Arc::new(LiveIndex::new(index));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {} for RTA", args.listen))?;
        eprintln!(
            "RTA: GET http://{}/v1/rta?campaign=AUDIENCE&device_md5=HEX (Ctrl-C stops)",
            listener.local_addr()?
        );
        let reloader = tokio::spawn(reload(
            source,
            Arc::clone(&live),
            fingerprint,
            Duration::from_secs(args.reload_every),
        ));
        jingteng_audience::rta::serve(listener, live, shutdown_signal()).await?;
        reloader.abort();
        eprintln!("RTA stopped");
        anyhow::Ok(())
    })
}

/// The files an index was built from, each with its length and time.
type Fingerprint = Vec<(PathBuf, u64, SystemTime)>;

/// What the index is built from.
struct Source {
    store: Store,
    collab: jingteng_psi::Collaboration,
    spec_dir: PathBuf,
    state: PathBuf,
    party: String,
}

impl Source {
    /// Builds the index and fingerprints what it was built from, printing a summary.
    fn build(&self) -> anyhow::Result<(RtaIndex, Fingerprint)> {
        // Fingerprint first: a change while building shows at the next check.
        let fingerprint = self.fingerprint();
        let delivered = self.state.join("delivered").join(&self.party);
        if !fingerprint
            .iter()
            .any(|(f, _, _)| f.starts_with(&delivered))
        {
            // Nothing to index yet: serve no campaign until a delivery arrives.
            if !self.collab.parties().iter().any(|p| p.name == self.party) {
                anyhow::bail!("the spec has no party {:?}", self.party);
            }
            eprintln!(
                "RTA: no audience has been delivered to {} under {} yet (every campaign is unknown until `jingteng audience deliver` runs)",
                self.party,
                self.state.display()
            );
            return Ok((RtaIndex::build(Vec::new(), &[])?, fingerprint));
        }
        let (index, built) = jingteng_audience::rta_index(
            &self.store,
            &self.collab,
            &self.spec_dir,
            &self.state,
            &self.party,
        )?;
        eprintln!(
            "RTA index of {}'s deliveries: campaigns [{}], {} users listed, {} suppressed devices, {} users without a device id",
            self.party,
            built.campaigns.join(", "),
            built.listed,
            built.suppressed,
            built.without_device
        );
        Ok((index, fingerprint))
    }

    /// Every file under the party's deliveries and the joined view (which a
    /// `jingteng forget` rebuilds), with its length and time.
    fn fingerprint(&self) -> Fingerprint {
        let mut files = Vec::new();
        for dir in [
            self.state.join("delivered").join(&self.party),
            self.state.join("joined"),
        ] {
            walk(&dir, &mut files);
        }
        files.sort();
        files
    }
}

fn walk(dir: &Path, out: &mut Fingerprint) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(&path, out);
        } else {
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((path, meta.len(), modified));
        }
    }
}

/// Checks every `every` whether deliveries or the view changed; if so, builds a new
/// index completely and swaps it in. A failed build keeps the index being served.
async fn reload(
    source: Source,
    live: Arc<LiveIndex>,
    mut fingerprint: Fingerprint,
    every: Duration,
) {
    let source = Arc::new(source);
    loop {
        tokio::time::sleep(every).await;
        let s = Arc::clone(&source);
        let seen = fingerprint.clone();
        let built = tokio::task::spawn_blocking(move || {
            if s.fingerprint() == seen {
                return Ok(None);
            }
            s.build().map(Some)
        })
        .await;
        match built {
            Ok(Ok(Some((index, f)))) => {
                let generation = live.replace(index);
                fingerprint = f;
                eprintln!("RTA index replaced (generation {generation})");
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                eprintln!("warning: RTA index not rebuilt, still serving the previous one: {e:#}")
            }
            Err(e) => eprintln!("warning: RTA index rebuild failed: {e}"),
        }
    }
}
