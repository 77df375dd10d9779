#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

//! The RTA server allocates nothing per request: once a connection is open, thousands
//! of decisions (yes, no, unknown campaign, malformed query, pipelined) leave the heap
//! allocation count where it was. Counted by a global allocator, so this test is alone
//! in its binary.

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use jingteng_audience::rta::{CampaignList, DeviceMd5, LiveIndex, RtaIndex, serve};
use jingteng_psi::DeviceType;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn d(i: u64) -> DeviceMd5 {
    DeviceMd5::of_device(DeviceType::Imei, &format!("86{i:013}")).unwrap()
}

/// Sends `request` and reads until `answers` whole responses have arrived (each ends
/// with its JSON body's `}`), into a fixed buffer.
fn round_trip(tcp: &mut std::net::TcpStream, request: &[u8], answers: usize, buf: &mut [u8]) {
    tcp.write_all(request).unwrap();
    let mut seen = 0;
    while seen < answers {
        let n = tcp.read(buf).unwrap();
        assert!(n > 0, "the server closed the connection");
        seen += buf[..n].iter().filter(|&&b| b == b'}').count();
    }
}

#[test]
fn decisions_allocate_nothing_per_request() {
    let members: Vec<DeviceMd5> = (0..1000).map(d).collect();
    let index = RtaIndex::build(
        vec![
            CampaignList::new("C1").tier(1.0, members[..500].to_vec()),
            CampaignList::new("C2").tier(2.5, members[250..].to_vec()),
        ],
        &[d(7)],
    )
    .unwrap();
    let live = Arc::new(LiveIndex::new(index));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve(listener, live, async {
                let _ = stopped.await;
            })
            .await
        })
    });

    // Every request is made before counting starts.
    let requests: Vec<Vec<u8>> = (0..2000u64)
        .map(|i| {
            let query = match i % 5 {
                0 | 1 => format!("campaign=C1&device_md5={}", d(i % 1200).to_hex()),
                2 => format!(
                    "campaign=C2&device_md5={}&req={i}",
                    d(i % 1200).to_hex().to_uppercase()
                ),
                3 => format!("campaign=C9&device_md5={}", d(i).to_hex()),
                _ => "campaign=C1&device_md5=not-hex".to_string(),
            };
            format!("GET /v1/rta?{query} HTTP/1.1\r\nhost: rta\r\nuser-agent: ad-server\r\n\r\n")
                .into_bytes()
        })
        .collect();
    let pipelined: Vec<u8> = requests[..20].concat();
    let mut buf = vec![0u8; 64 * 1024];
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    // The connection's first requests allocate its buffers.
    for r in &requests[..100] {
        round_trip(&mut tcp, r, 1, &mut buf);
    }

    let region = Region::new(GLOBAL);
    for r in &requests {
        round_trip(&mut tcp, r, 1, &mut buf);
    }
    for _ in 0..20 {
        round_trip(&mut tcp, &pipelined, 20, &mut buf);
    }
    let change = region.change();
    // 2,400 requests; a per-request allocation anywhere would count thousands.
    assert!(
        change.allocations + change.reallocations < 10,
        "{} allocations and {} reallocations for 2,400 requests",
        change.allocations,
        change.reallocations
    );

    drop(tcp);
    stop.send(()).unwrap();
    server.join().unwrap().unwrap();
}
