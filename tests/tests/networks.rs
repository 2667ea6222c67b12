//! User-defined bridge networks: create, ls, inspect, rm, prune, `docker run
//! --network NAME`, internal networks, and dockerd's answers to bad input.

use berth_tests::{Daemon, Outside, raw_http};
use serde_json::Value;

fn inspect(d: &Daemon, what: &[&str]) -> Value {
    let mut args = vec!["inspect"];
    args.extend_from_slice(what);
    serde_json::from_str(&d.docker(&args).expect("inspect")).expect("json")
}

fn link_exists(name: &str) -> bool {
    std::fs::metadata(format!("/sys/class/net/{name}")).is_ok()
}

#[test]
fn user_networks_from_create_to_rm() {
    let d = Daemon::with_busybox();
    let id = d
        .docker(&[
            "network",
            "create",
            "--subnet",
            "10.231.1.0/24",
            "--gateway",
            "10.231.1.254",
            "--ip-range",
            "10.231.1.128/25",
            "--label",
            "team=a",
            "net-a",
        ])
        .expect("create")
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ls = d.docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]).expect("ls");
    assert!(ls.lines().any(|l| l == "net-a bridge"), "{ls}");
    let net = &d
        .docker(&["network", "inspect", "net-a"])
        .map(|s| serde_json::from_str::<Value>(&s).expect("json"))
        .expect("i")[0];
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "10.231.1.0/24");
    assert_eq!(net["IPAM"]["Config"][0]["Gateway"], "10.231.1.254");
    assert_eq!(net["IPAM"]["Config"][0]["IPRange"], "10.231.1.128/25");
    assert_eq!(net["Labels"]["team"], "a");
    // Options are echoed as given (none here), as dockerd does; the device is br-<id>.
    assert_eq!(net["Options"], serde_json::json!({}), "{net}");
    let bridge = format!("br-{}", &id[..12]);
    assert!(link_exists(&bridge));

    // Containers on it get addresses from the range and reach each other.
    d.docker(&["run", "-d", "--name", "n1", "--network", "net-a", "busybox", "sleep", "300"]).expect("n1");
    d.docker(&["run", "-d", "--name", "n2", "--network", "net-a", "busybox", "sleep", "300"]).expect("n2");
    let ip1 =
        inspect(&d, &["n1"])[0]["NetworkSettings"]["Networks"]["net-a"]["IPAddress"].as_str().expect("ip").to_string();
    let ip2 =
        inspect(&d, &["n2"])[0]["NetworkSettings"]["Networks"]["net-a"]["IPAddress"].as_str().expect("ip").to_string();
    assert_eq!(ip1, "10.231.1.129");
    assert_eq!(ip2, "10.231.1.130");
    assert_eq!(d.out(&["exec", "n1", "ping", "-c", "1", "-W", "5", &ip2]).0, Some(0));
    let route = d.docker(&["exec", "n1", "ip", "route"]).expect("route");
    assert!(route.contains("default via 10.231.1.254"), "{route}");
    let net = inspect(&d, &["--type", "network", "net-a"]);
    let containers = net[0]["Containers"].as_object().expect("containers");
    assert_eq!(containers.len(), 2);
    assert!(
        containers.values().any(|c| c["Name"] == "n1" && c["IPv4Address"] == format!("{ip1}/24")),
        "{containers:?}"
    );

    // In use: dockerd's 403.
    let (code, _, err) = d.out(&["network", "rm", "net-a"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("has active endpoints"), "{err}");
    let (status, _, _) = raw_http(&d.sock(), "DELETE", "/networks/net-a", b"").expect("raw");
    assert_eq!(status, 403);

    // An internal network has no way out: no default route.
    d.docker(&["network", "create", "--internal", "--subnet", "10.231.2.0/24", "net-internal"]).expect("internal");
    let route = d.docker(&["run", "--rm", "--network", "net-internal", "busybox", "ip", "route"]).expect("run");
    assert!(!route.contains("default") && route.contains("10.231.2.0/24"), "{route}");

    // A network without a subnet gets one from the pools, clashing with nothing.
    d.docker(&["network", "create", "net-auto"]).expect("auto");
    let auto = inspect(&d, &["--type", "network", "net-auto"]);
    let subnet = auto[0]["IPAM"]["Config"][0]["Subnet"].as_str().expect("subnet").to_string();
    assert!(!subnet.is_empty() && !subnet.starts_with("172.17."), "{subnet}");

    // Removing: containers first, then the network and its bridge.
    d.docker(&["rm", "-f", "n1", "n2"]).expect("rm");
    d.docker(&["network", "rm", "net-a"]).expect("network rm");
    assert!(!link_exists(&bridge), "the bridge goes with the network");
    let pruned = d.docker(&["network", "prune", "-f"]).expect("prune");
    assert!(pruned.contains("net-internal") && pruned.contains("net-auto"), "{pruned}");
    let ls = d.docker(&["network", "ls", "--format", "{{.Name}}"]).expect("ls");
    let mut names: Vec<&str> = ls.lines().collect();
    names.sort_unstable();
    assert_eq!(names, vec!["bridge", "host", "none"]);
}

#[test]
fn bad_network_input_gets_dockerds_answers() {
    let d = Daemon::with_busybox();
    d.docker(&["network", "create", "--subnet", "10.231.3.0/24", "net-b"]).expect("create");
    let cases: [(&[&str], &str); 6] = [
        (&["network", "create", "net-b"], "already exists"),
        (&["network", "create", "--subnet", "10.231.3.0/25", "net-overlap"], "Pool overlaps"),
        (
            &["network", "create", "--subnet", "10.231.4.0/24", "--gateway", "10.231.5.1", "net-gw"],
            "no matching subnet",
        ),
        (&["network", "create", "--driver", "macvlanx", "net-driver"], "not found"),
        (&["network", "create", "bad/name"], "invalid network name"),
        (&["network", "rm", "bridge"], "pre-defined network"),
    ];
    for (args, want) in cases {
        let (code, _, err) = d.out(args);
        assert_ne!(code, Some(0), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let body = br#"{"Name":"net-b"}"#;
    assert_eq!(raw_http(&d.sock(), "POST", "/networks/create", body).expect("raw").0, 409);
    let body = br#"{"Name":"x2","IPAM":{"Config":[{"Subnet":"10.231.3.0/25"}]}}"#;
    assert_eq!(raw_http(&d.sock(), "POST", "/networks/create", body).expect("raw").0, 403);
    assert_eq!(raw_http(&d.sock(), "DELETE", "/networks/bridge", b"").expect("raw").0, 403);
    assert_eq!(raw_http(&d.sock(), "DELETE", "/networks/nosuchnet", b"").expect("raw").0, 404);
    // A container on a network that does not exist: 404 at create, nothing left behind.
    let (code, _, err) = d.out(&["run", "--rm", "--network", "nosuchnet", "busybox", "true"]);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("network nosuchnet not found"), "{err}");
    assert_eq!(d.docker(&["ps", "-aq"]).expect("ps").trim(), "");
    d.docker(&["network", "rm", "net-b"]).expect("rm");
}

#[test]
fn static_addresses_and_connect_disconnect() {
    let d = Daemon::with_busybox();
    d.docker(&["network", "create", "--subnet", "10.231.6.0/24", "net-c"]).expect("net-c");
    d.docker(&["network", "create", "--subnet", "10.231.7.0/24", "net-d"]).expect("net-d");
    d.docker(&["run", "-d", "--name", "m1", "--network", "net-c", "--ip", "10.231.6.50", "busybox", "sleep", "300"])
        .expect("m1");
    let addr = d.docker(&["exec", "m1", "ip", "-4", "-o", "addr", "show", "eth0"]).expect("addr");
    assert!(addr.contains("10.231.6.50/24"), "{addr}");
    // The same address again: refused at start, with dockerd's words.
    let (code, _, err) =
        d.out(&["run", "-d", "--name", "m-dup", "--network", "net-c", "--ip", "10.231.6.50", "busybox", "sleep", "1"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("Address already in use"), "{err}");
    let (code, _, err) = d.out(&["run", "--rm", "--network", "net-c", "--ip", "10.99.0.1", "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("does not belong to any of this network's subnets"), "{err}");

    // Connect a running container: eth1 appears, the default route stays on eth0.
    d.docker(&["network", "connect", "net-d", "m1"]).expect("connect");
    let addr = d.docker(&["exec", "m1", "ip", "-4", "-o", "addr", "show", "eth1"]).expect("eth1");
    assert!(addr.contains("10.231.7."), "{addr}");
    let route = d.docker(&["exec", "m1", "ip", "route"]).expect("route");
    assert!(route.contains("default via 10.231.6.1 dev eth0"), "{route}");
    let nets = &inspect(&d, &["m1"])[0]["NetworkSettings"]["Networks"];
    assert!(nets["net-c"].is_object() && nets["net-d"].is_object(), "{nets}");
    let (code, _, err) = d.out(&["network", "connect", "net-d", "m1"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("already exists"), "{err}");

    // Disconnect: eth1 goes, the network forgets the container.
    d.docker(&["network", "disconnect", "net-d", "m1"]).expect("disconnect");
    assert_ne!(d.out(&["exec", "m1", "ip", "link", "show", "eth1"]).0, Some(0));
    let net = inspect(&d, &["--type", "network", "net-d"]);
    assert_eq!(net[0]["Containers"].as_object().map(|m| m.len()), Some(0));
    let (code, _, err) = d.out(&["network", "disconnect", "net-d", "m1"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("is not connected"), "{err}");

    // A stopped container connected now is plugged in at its start.
    d.docker(&["create", "--name", "m2", "--network", "net-c", "busybox", "sleep", "300"]).expect("create m2");
    d.docker(&["network", "connect", "net-d", "m2"]).expect("connect stopped");
    d.docker(&["start", "m2"]).expect("start m2");
    let links = d.docker(&["exec", "m2", "ip", "-o", "link"]).expect("links");
    assert!(links.contains("eth0") && links.contains("eth1"), "{links}");
    d.docker(&["rm", "-f", "m1", "m2", "m-dup"]).expect("rm");
    d.docker(&["network", "rm", "net-c", "net-d"]).expect("network rm");
}

#[test]
fn outbound_nat_isolation_and_internal_networks() {
    let mut d = Daemon::with_busybox();
    let outside = Outside::new(&d.bridge[2..], 1);
    // A server outside that tells whom it saw.
    let _server = outside.serve_whoami(9000);
    // From a container on the default bridge: out through the host, masqueraded.
    let seen = d.docker_out(&["run", "--rm", "busybox", "nc", "-w", "5", "10.239.1.2", "9000"]).expect("nc out");
    let seen = String::from_utf8_lossy(&seen.stdout).to_string();
    assert_eq!(seen.trim(), "10.239.1.1", "the outside sees the host's address");
    let table = format!("berth_{}", d.bridge);
    let rules = std::process::Command::new("nft").args(["list", "table", "inet", &table]).output().expect("nft");
    let rules = String::from_utf8_lossy(&rules.stdout).to_string();
    assert_eq!(rules.matches("masquerade").count(), 1, "{rules}");

    // Two networks cannot reach each other; an internal one has no way out.
    d.docker(&["network", "create", "--subnet", "10.231.10.0/24", "net-e"]).expect("net-e");
    d.docker(&["network", "create", "--internal", "--subnet", "10.231.11.0/24", "net-i"]).expect("net-i");
    d.docker(&["run", "-d", "--name", "on-e", "--network", "net-e", "busybox", "sleep", "300"]).expect("on-e");
    d.docker(&["run", "-d", "--name", "on-bridge", "busybox", "sleep", "300"]).expect("on-bridge");
    let ip_e = inspect(&d, &["on-e"])[0]["NetworkSettings"]["Networks"]["net-e"]["IPAddress"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(d.out(&["exec", "on-bridge", "ping", "-c", "1", "-W", "1", &ip_e]).0, Some(1), "isolated");
    let (code, _, _) = d.out(&["run", "--rm", "--network", "net-i", "busybox", "nc", "-w", "1", "10.239.1.2", "9000"]);
    assert_ne!(code, Some(0), "an internal network has no way out");
    let rules = std::process::Command::new("nft").args(["list", "table", "inet", &table]).output().expect("nft");
    let rules = String::from_utf8_lossy(&rules.stdout).to_string();
    assert_eq!(rules.matches("masquerade").count(), 2, "{rules}");

    drop(outside);
    d.docker(&["rm", "-f", "on-e", "on-bridge"]).expect("rm");
    d.docker(&["network", "rm", "net-e", "net-i"]).expect("network rm");
    // berthd killed and started again: the same rules, once.
    d.kill9().expect("kill -9");
    d.restart().expect("restart");
    let rules = std::process::Command::new("nft").args(["list", "table", "inet", &table]).output().expect("nft");
    let rules = String::from_utf8_lossy(&rules.stdout).to_string();
    assert_eq!(rules.matches("masquerade").count(), 1, "{rules}");
    assert_eq!(rules.matches("table inet").count(), 1, "{rules}");
}

fn fetch(addr: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr.parse().ok()?, std::time::Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(3))).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

fn wait_fetch(addr: &str, want: &str) -> bool {
    (0..60).any(|_| {
        let ok = fetch(addr).is_some_and(|t| t.contains(want));
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ok
    })
}

#[test]
fn published_ports_reach_the_container_and_go_with_it() {
    let mut d = Daemon::with_busybox();
    let port = berth_tests::free_port();
    let serve = "while true; do echo hello-web | nc -l -p 80; done";
    d.docker(&["run", "-d", "--name", "web", "-p", &format!("{port}:80"), "busybox", "sh", "-c", serve]).expect("web");
    // From the host itself, to 127.0.0.1 (dockerd's userland-proxy case).
    assert!(wait_fetch(&format!("127.0.0.1:{port}"), "hello-web"), "127.0.0.1:{port}");
    // From another container, through the host's address on the bridge (hairpin).
    let gw = d.docker(&["network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", "bridge"]).expect("gw");
    let via = d.docker(&["run", "--rm", "busybox", "nc", "-w", "3", gw.trim(), &port.to_string()]).expect("hairpin");
    assert!(via.contains("hello-web"), "{via:?}");
    // From the container itself, through the host's address, to its own published port.
    let own = d.docker(&["exec", "web", "nc", "-w", "3", gw.trim(), &port.to_string()]).expect("its own port");
    assert!(own.contains("hello-web"), "{own:?}");
    // docker port and inspect show it; ps too.
    let shown = d.docker(&["port", "web", "80"]).expect("port");
    assert!(shown.contains(&format!("0.0.0.0:{port}")), "{shown}");
    let ps = d.docker(&["ps", "--format", "{{.Ports}}"]).expect("ps");
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");

    // A random host port (-p 80), and -P for the image's exposed ports.
    d.docker(&["run", "-d", "--name", "rnd", "-p", "80", "busybox", "sh", "-c", serve]).expect("rnd");
    let shown = d.docker(&["port", "rnd", "80"]).expect("port");
    let host_port: u16 =
        shown.lines().next().and_then(|l| l.rsplit(':').next()).and_then(|p| p.trim().parse().ok()).expect("p");
    assert!((49153..=60999).contains(&host_port), "{shown}");
    assert!(wait_fetch(&format!("127.0.0.1:{host_port}"), "hello-web"));
    // A host port range: the first free port of it (web holds the first).
    let range = format!("{port}-{}:80", port + 1);
    d.docker(&["run", "-d", "--name", "rng", "-p", &range, "busybox", "sh", "-c", serve]).expect("range");
    let shown = d.docker(&["port", "rng", "80"]).expect("port");
    assert!(shown.contains(&format!(":{}", port + 1)), "{shown}");

    // Taken: by another container, and by a process on the host.
    let (code, _, err) = d.out(&["run", "-d", "--name", "dup", "-p", &format!("{port}:80"), "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("port is already allocated"), "{err}");
    let holder = std::net::TcpListener::bind("0.0.0.0:0").expect("listen");
    let held = holder.local_addr().expect("addr").port();
    let (code, _, err) = d.out(&["run", "-d", "--name", "held", "-p", &format!("{held}:80"), "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("address already in use"), "{err}");

    // udp: Debian's busybox has no udp server, so the host's python3 answers from
    // inside the container (bind-mounted read-only), upper-casing what it gets.
    if std::path::Path::new("/usr/bin/python3").exists() {
        let uport = berth_tests::free_port();
        let echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',53))\n\
                    while True:\n d,a=s.recvfrom(100); s.sendto(d.upper(),a)";
        d.docker(&[
            "run",
            "-d",
            "--name",
            "udp",
            "-p",
            &format!("{uport}:53/udp"),
            "-v",
            "/usr:/usr:ro",
            "-v",
            "/lib:/lib:ro",
            "-v",
            "/lib64:/lib64:ro",
            "busybox",
            "/usr/bin/python3",
            "-c",
            echo,
        ])
        .expect("udp");
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        sock.set_read_timeout(Some(std::time::Duration::from_millis(200))).expect("timeout");
        let got = (0..50).any(|_| {
            let _ = sock.send_to(b"ping-udp", ("127.0.0.1", uport));
            let mut buf = [0u8; 64];
            matches!(sock.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == b"PING-UDP")
        });
        assert!(got, "a udp datagram went to the container and its answer came back");
    }

    // berthd dies: the kernel keeps forwarding; back again: the rules once.
    d.kill9().expect("kill -9");
    assert!(wait_fetch(&format!("127.0.0.1:{port}"), "hello-web"), "while berthd is down");
    d.restart().expect("restart");
    let table = format!("berth_{}", d.bridge);
    let rules = || {
        let o = std::process::Command::new("nft").args(["list", "table", "inet", &table]).output().expect("nft");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(rules().matches(&format!("dport {port} ")).count(), 2, "{}", rules());
    // Stopped: the rules go.
    d.docker(&["stop", "-t", "0", "web"]).expect("stop");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rules().contains(&format!("dport {port} ")) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!rules().contains(&format!("dport {port} ")), "{}", rules());
    assert!(fetch(&format!("127.0.0.1:{port}")).is_none());
    d.docker(&["rm", "-f", "web", "rnd", "rng", "dup", "held", "udp"]).expect("rm");
}

#[test]
fn hostname_add_host_and_dns_land_in_the_containers_files() {
    let d = Daemon::with_busybox();
    let script = "hostname; cat /etc/hosts; cat /etc/resolv.conf; ip -4 -o addr show eth0";
    let text = d
        .docker(&[
            "run",
            "--rm",
            "--hostname",
            "web1",
            "--add-host",
            "db.local:10.0.0.5",
            "--dns",
            "10.0.0.53",
            "--dns-search",
            "corp.test",
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .expect("run");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("web1"));
    assert!(text.contains("10.0.0.5\tdb.local"), "{text}");
    assert!(text.contains("nameserver 10.0.0.53\n") && text.contains("search corp.test\n"), "{text}");
    assert_eq!(text.matches("nameserver").count(), 1, "--dns replaces the host's resolvers: {text}");
    // Its own address names it.
    let ip =
        text.lines().last().and_then(|l| l.split_whitespace().nth(3)).and_then(|a| a.split('/').next()).expect("ip");
    assert!(text.contains(&format!("{ip}\tweb1")), "{text}");
}

/// A DNS server outside that knows one name, outside.test (192.0.2.7), and
/// answers NXDOMAIN to everything else.
const FAKE_UPSTREAM: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print('ready', flush=True)
while True:
    q, a = s.recvfrom(512)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode())
        i += q[i] + 1
    qtype = struct.unpack('>H', q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    if '.'.join(labels).lower() == 'outside.test':
        ans = b'\xc0\x0c' + struct.pack('>HHIH', 1, 1, 60, 4) + bytes([192, 0, 2, 7]) if qtype == 1 else b''
        r = q[:2] + struct.pack('>HHHHH', 0x8180, 1, 1 if ans else 0, 0, 0) + question + ans
    else:
        r = q[:2] + struct.pack('>HHHHH', 0x8183, 1, 0, 0, 0) + question
    s.sendto(r, a)
"#;

fn ip_on(d: &Daemon, container: &str, network: &str) -> String {
    inspect(d, &[container])[0]["NetworkSettings"]["Networks"][network]["IPAddress"].as_str().unwrap_or("").to_string()
}

#[test]
fn embedded_dns_names_aliases_short_ids_and_forwarding() {
    let mut d = Daemon::with_busybox();
    let outside = Outside::new(&d.bridge[2..], 2);
    let _upstream = outside.serve(FAKE_UPSTREAM, &[&outside.addr]);
    d.docker(&["network", "create", "--subnet", "10.231.20.0/24", "net-dns"]).expect("net-dns");
    d.docker(&["network", "create", "--subnet", "10.231.21.0/24", "net-dns2"]).expect("net-dns2");
    let web = d
        .docker(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "net-dns",
            "--network-alias",
            "srv",
            "busybox",
            "sleep",
            "300",
        ])
        .expect("web")
        .trim()
        .to_string();
    let dns = ["--dns", outside.addr.as_str()];
    let mut client = vec!["run", "-d", "--name", "client", "--network", "net-dns"];
    client.extend_from_slice(&dns);
    client.extend_from_slice(&["busybox", "sleep", "300"]);
    d.docker(&client).expect("client");
    let web_ip = ip_on(&d, "web", "net-dns");
    assert!(web_ip.starts_with("10.231.20."), "{web_ip}");

    let resolv = d.docker(&["exec", "client", "cat", "/etc/resolv.conf"]).expect("resolv.conf");
    assert!(resolv.contains("nameserver 127.0.0.11\n") && resolv.contains("ndots:0"), "{resolv}");
    assert!(!resolv.contains(&outside.addr), "--dns goes to the embedded DNS, not the container: {resolv}");
    let lookup = |d: &Daemon, who: &str, name: &str| d.out(&["exec", who, "nslookup", name]);
    for name in ["web", "srv", &web[..12], "web.net-dns", "WEB"] {
        let (code, text, err) = lookup(&d, "client", name);
        assert_eq!(code, Some(0), "{name}: {text} {err}");
        assert!(text.contains(&format!("Address: {web_ip}")), "{name}: {text}");
    }
    // Through libc (getaddrinfo), as programs resolve.
    assert_eq!(d.out(&["exec", "client", "ping", "-c", "1", "-W", "2", "srv"]).0, Some(0), "ping by alias");
    let reverse = d.docker(&["exec", "client", "nslookup", &web_ip]).expect("reverse");
    assert!(reverse.contains("web.net-dns"), "{reverse}");
    // Other names go to the container's --dns servers.
    let (code, text, err) = lookup(&d, "client", "outside.test");
    assert_eq!(code, Some(0), "{text} {err}");
    assert!(text.contains("192.0.2.7"), "forwarded: {text}");
    assert_ne!(lookup(&d, "client", "nowhere.test").0, Some(0), "NXDOMAIN from upstream");

    // Another network does not see web's names; the default bridge has none.
    let mut other = vec!["run", "--rm", "--network", "net-dns2"];
    other.extend_from_slice(&dns);
    other.extend_from_slice(&["busybox", "nslookup", "web"]);
    assert_ne!(d.out(&other).0, Some(0), "isolated networks do not resolve each other");
    let plain = d.docker(&["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]).expect("bridge resolv.conf");
    assert!(!plain.contains("127.0.0.11"), "{plain}");

    // connect --alias: web answers to db on net-dns2, with its address there.
    d.docker(&["network", "connect", "--alias", "db", "net-dns2", "web"]).expect("connect");
    let web_ip2 = ip_on(&d, "web", "net-dns2");
    let on2 = vec!["run", "--rm", "--network", "net-dns2", "busybox", "nslookup", "db"];
    let text = d.docker(&on2).expect("db on net-dns2");
    assert!(text.contains(&format!("Address: {web_ip2}")) && !text.contains(&web_ip), "{text}");
    let networks = &inspect(&d, &["web"])[0]["NetworkSettings"]["Networks"];
    assert_eq!(networks["net-dns2"]["Aliases"], serde_json::json!(["db"]));
    let names = networks["net-dns"]["DNSNames"].to_string();
    assert!(names.contains("\"web\"") && names.contains("\"srv\"") && names.contains(&web[..12]), "{names}");

    // Renamed: the new name answers at once.
    d.docker(&["rename", "web", "web2"]).expect("rename");
    assert!(lookup(&d, "client", "web2").1.contains(&web_ip), "the new name resolves");
    assert_ne!(lookup(&d, "client", "web").0, Some(0), "the old one does not");

    // berthd killed and back: running containers still resolve.
    d.kill9().expect("kill -9");
    d.restart().expect("restart");
    let (code, text, err) = lookup(&d, "client", "web2");
    assert_eq!(code, Some(0), "{text} {err}");
    assert!(text.contains(&web_ip), "{text}");

    // A stopped container's resolver is gone with it; nothing is left listening.
    d.docker(&["rm", "-f", "web2", "client"]).expect("rm");
    d.docker(&["network", "rm", "net-dns", "net-dns2"]).expect("network rm");
}

#[tokio::test(flavor = "multi_thread")]
async fn bollard_creates_connects_and_removes_networks() {
    use bollard::models::{EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig};
    use bollard::models::{NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest};
    use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};
    let d = Daemon::with_busybox();
    let client = bollard::Docker::connect_with_unix(&d.host, 30, bollard::API_DEFAULT_VERSION).expect("connect");
    let created = client
        .create_network(NetworkCreateRequest {
            name: "bn".into(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig { subnet: Some("10.231.30.0/24".into()), ..Default::default() }]),
                ..Default::default()
            }),
            labels: Some([("team".to_string(), "blue".to_string())].into()),
            ..Default::default()
        })
        .await
        .expect("create");
    let id = created.id.clone();
    assert_eq!(id.len(), 64);
    let dup = client.create_network(NetworkCreateRequest { name: "bn".into(), ..Default::default() }).await;
    assert!(matches!(dup, Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })), "{dup:?}");
    let listed = client
        .list_networks(Some(ListNetworksOptions {
            filters: Some([("name".to_string(), vec!["bn".to_string()])].into()),
        }))
        .await
        .expect("list");
    assert_eq!(listed.iter().filter_map(|n| n.id.clone()).collect::<Vec<_>>(), vec![id.clone()]);

    // A server on the network, connected by bollard with an alias and a fixed address.
    d.docker(&["run", "-d", "--name", "server", "busybox", "httpd", "-f", "-p", "8000", "-h", "/etc"]).expect("server");
    client
        .connect_network(
            "bn",
            NetworkConnectRequest {
                container: Some("server".into()),
                endpoint_config: Some(EndpointSettings {
                    aliases: Some(vec!["pal".into()]),
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some("10.231.30.40".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
        )
        .await
        .expect("connect");
    let n = client.inspect_network("bn", None::<InspectNetworkOptions>).await.expect("inspect");
    assert_eq!(n.labels.as_ref().and_then(|l| l.get("team")).map(String::as_str), Some("blue"));
    let subnet = n.ipam.as_ref().and_then(|i| i.config.as_ref()).and_then(|c| c.first()).and_then(|c| c.subnet.clone());
    assert_eq!(subnet.as_deref(), Some("10.231.30.0/24"));
    let containers = n.containers.clone().unwrap_or_default();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let on = containers.values().next().cloned().unwrap_or_default();
    assert_eq!(on.ipv4_address.as_deref(), Some("10.231.30.40/24"));
    assert_eq!(on.name.as_deref(), Some("server"));

    // TCP between containers, by the alias bollard gave.
    let page = d
        .docker(&["run", "--rm", "--network", "bn", "busybox", "wget", "-q", "-O", "-", "http://pal:8000/passwd"])
        .expect("wget by alias");
    assert!(page.contains("root:x:0:0"), "{page}");

    client
        .disconnect_network("bn", NetworkDisconnectRequest { container: Some("server".into()), force: Some(false) })
        .await
        .expect("disconnect");
    let n = client.inspect_network(&id[..12], None::<InspectNetworkOptions>).await.expect("inspect by prefix");
    assert!(n.containers.unwrap_or_default().is_empty());
    let again = client
        .disconnect_network("bn", NetworkDisconnectRequest { container: Some("server".into()), force: Some(false) })
        .await;
    assert!(
        matches!(again, Err(bollard::errors::Error::DockerResponseServerError { status_code: 403, .. })),
        "{again:?}"
    );
    client.remove_network("bn").await.expect("remove");
    let gone = client.inspect_network("bn", None::<InspectNetworkOptions>).await;
    assert!(
        matches!(gone, Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })),
        "{gone:?}"
    );
    d.docker(&["rm", "-f", "server"]).expect("rm");
}

#[test]
fn a_created_container_shows_its_networks_and_can_be_reconnected_with_aliases() {
    let d = Daemon::with_busybox();
    d.docker(&["network", "create", "cfront"]).expect("network create");
    d.docker(&["create", "--name", "cweb", "--network", "cfront", "busybox", "sleep", "300"]).expect("create");
    let net = &inspect(&d, &["cweb"])[0]["NetworkSettings"]["Networks"];
    assert_eq!(net["cfront"]["IPAddress"], "", "configured, no address before the start: {net}");
    assert!(net["cfront"]["NetworkID"].as_str().is_some_and(|id| id.len() == 64), "{net}");
    // Compose's way: disconnect the created container, connect it with aliases.
    d.docker(&["network", "disconnect", "cfront", "cweb"]).expect("disconnect a created container");
    assert_eq!(inspect(&d, &["cweb"])[0]["NetworkSettings"]["Networks"], serde_json::json!({}));
    d.docker(&["network", "connect", "--alias", "web", "cfront", "cweb"]).expect("connect with an alias");
    let (code, _, err) = d.out(&["network", "connect", "cfront", "cweb"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("already exists in network cfront"), "{err}");
    d.docker(&["start", "cweb"]).expect("start");
    let ip = inspect(&d, &["cweb"])[0]["NetworkSettings"]["Networks"]["cfront"]["IPAddress"]
        .as_str()
        .expect("an address once started")
        .to_string();
    let looked = d.docker(&["run", "--rm", "--network", "cfront", "busybox", "nslookup", "web", "127.0.0.11"]);
    assert!(looked.expect("nslookup").contains(&ip), "the alias resolves to the container");
    // A stopped container keeps showing the network, without an address.
    d.docker(&["stop", "-t", "1", "cweb"]).expect("stop");
    let net = &inspect(&d, &["cweb"])[0]["NetworkSettings"]["Networks"]["cfront"];
    assert_eq!((net["IPAddress"].as_str(), net["Aliases"][0].as_str()), (Some(""), Some("web")), "{net}");
}

#[test]
fn ipv6_networks_address_resolve_route_and_publish() {
    let d = Daemon::with_busybox();
    d.docker(&["network", "create", "--ipv6", "--subnet", "10.231.60.0/24", "--subnet", "fd42:60::/64", "six"])
        .expect("create with IPv6");
    let net = inspect(&d, &["--type", "network", "six"]);
    assert_eq!(net[0]["EnableIPv6"], true);
    let pools: Vec<&str> =
        net[0]["IPAM"]["Config"].as_array().expect("pools").iter().filter_map(|p| p["Subnet"].as_str()).collect();
    assert_eq!(pools, ["10.231.60.0/24", "fd42:60::/64"]);
    let port = berth_tests::free_port();
    let serve = "mkdir -p /www && echo six-ok > /www/index.html && httpd -f -p 80 -h /www";
    d.docker(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "six",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "sh",
        "-c",
        serve,
    ])
    .expect("run");
    let c = inspect(&d, &["srv"]);
    let ep = &c[0]["NetworkSettings"]["Networks"]["six"];
    assert_eq!((ep["GlobalIPv6Address"].as_str(), ep["GlobalIPv6PrefixLen"].as_i64()), (Some("fd42:60::2"), Some(64)));
    assert_eq!(ep["IPv6Gateway"], "fd42:60::1");
    let on_net = inspect(&d, &["--type", "network", "six"]);
    let listed = on_net[0]["Containers"].as_object().expect("containers").values().next().cloned().expect("one");
    assert_eq!(listed["IPv6Address"], "fd42:60::2/64");

    // Another container reaches it over IPv6, by address and by name (AAAA).
    let static6 = d.docker(&["run", "--rm", "--network", "six", "--ip6", "fd42:60::99", "busybox", "ip", "-6", "addr"]);
    assert!(static6.expect("--ip6").contains("fd42:60::99/64"));
    let got = d.docker(&["run", "--rm", "--network", "six", "busybox", "wget", "-qO-", "http://[fd42:60::2]/"]);
    assert_eq!(got.expect("over IPv6").trim(), "six-ok");
    let aaaa = d.docker(&["run", "--rm", "--network", "six", "busybox", "nslookup", "-type=aaaa", "srv"]);
    assert!(aaaa.expect("AAAA").contains("fd42:60::2"));
    let route = d.docker(&["run", "--rm", "--network", "six", "busybox", "ip", "-6", "route"]).expect("routes");
    assert!(route.contains("default via fd42:60::1"), "{route}");

    // The host reaches it directly, and through the published port on ::1.
    let get = |addr: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(3))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    };
    assert!(get("[fd42:60::2]:80").is_some_and(|t| t.contains("six-ok")), "[fd42:60::2]:80 from the host");
    let via_v6 = (0..50).find_map(|_| {
        let got = get(&format!("[::1]:{port}")).filter(|t| t.contains("six-ok"));
        if got.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        got
    });
    assert!(via_v6.is_some(), "[::1]:{port} reaches the container");
    assert!(get(&format!("127.0.0.1:{port}")).is_some_and(|t| t.contains("six-ok")), "and IPv4 still does");
    let port6 = berth_tests::free_port();
    d.docker(&["run", "-d", "--name", "only6", "-p", &format!("[::1]:{port6}:80"), "busybox", "sh", "-c", serve])
        .expect("publish on ::1");
    let shown = d.docker(&["port", "only6"]).expect("port");
    assert!(shown.contains(&format!("[::1]:{port6}")), "{shown}");
    assert!((0..50).any(|_| {
        let ok = get(&format!("[::1]:{port6}")).is_some_and(|t| t.contains("six-ok"));
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ok
    }));
    d.docker(&["rm", "-f", "srv", "only6"]).expect("rm");
    assert!(get(&format!("[::1]:{port}")).is_none(), "the proxy goes with the container");

    // A unique local /64 when none is given; an IPv6 subnet needs --ipv6.
    d.docker(&["network", "create", "--ipv6", "six-auto"]).expect("create");
    let auto = inspect(&d, &["--type", "network", "six-auto"]);
    let subnet6 = auto[0]["IPAM"]["Config"][1]["Subnet"].as_str().unwrap_or_default().to_string();
    assert!(subnet6.starts_with("fd") && subnet6.ends_with("::/64"), "{subnet6}");
    let (code, _, err) = d.out(&["network", "create", "--subnet", "fd42:61::/64", "not6"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("EnableIPv6"), "{err}");
    let (code, _, err) = d.out(&["run", "--rm", "--network", "six", "--ip6", "fd42:99::5", "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("does not belong"), "{err}");
    d.docker(&["network", "rm", "six", "six-auto"]).expect("rm networks");
}
