//! A network namespace joined to the host by a veth pair, so PostgreSQL can live behind a link
//! whose packets iptables can silently drop: a real half-open connection, which no userspace
//! proxy can fake.

use std::process::Command;

/// A namespace with the host at `host_ip` and the namespace at `ns_ip`.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    pub host_ip: String,
    pub ns_ip: String,
    veth: String,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(output.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

impl Netns {
    /// Creates the namespace and its link (needs root).
    pub fn create() -> Netns {
        let id = std::process::id() % 200 + 20;
        let name = format!("ckptns{id}");
        let veth = format!("ckptv{id}");
        let peer = format!("ckptp{id}");
        let (host_ip, ns_ip) = (format!("10.213.{id}.1"), format!("10.213.{id}.2"));
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let _ = Command::new("ip").args(["link", "del", &veth]).status();
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&["netns", "exec", &name, "ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &peer]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &peer, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Netns { name, host_ip, ns_ip, veth }
    }

    /// Drops every packet between the host and the namespace, both ways, without a reset.
    pub fn blackhole(&self) {
        self.iptables(&["-A", "INPUT", "-s", &self.host_ip, "-j", "DROP"]);
        self.iptables(&["-A", "OUTPUT", "-d", &self.host_ip, "-j", "DROP"]);
    }

    /// Removes the drop rules.
    pub fn heal(&self) {
        self.iptables(&["-F"]);
    }

    fn iptables(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "iptables"];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "exec", &self.name, "iptables", "-F"]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.veth]).status();
    }
}
