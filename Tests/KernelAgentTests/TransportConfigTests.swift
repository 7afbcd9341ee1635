import Foundation
import Testing
@testable import KernelAgent

/// KA_CONFIG's ssh and hosts sections, hosts.yaml's ssh key, and how FleetTransports merges them.
@Suite struct TransportConfigTests {
    static let state = URL(fileURLWithPath: "/var/lib/ka-state")

    /// The shape `scripts/fleet-box up` writes (write_ka_yaml), with the control plane's keys in the same file.
    static let boxLike = """
    # comment
    gitea_url: http://127.0.0.1:3000
    repo: marfrit/kernel-agent
    consent_ttl: 24h
    ssh:
      dir: /tmp/box/ssh
      identity_file: /tmp/box/ssh/id_ed25519
      known_hosts: /tmp/box/ssh/known_hosts
      config_file: /tmp/box/ssh/ssh_config
    hosts:
      boltzmann:  # build (primary)
        ssh:
          address: 10.213.77.11
          port: 22
          user: kbuild
      fresnel:
        ssh:
          address: 10.213.77.14
          port: 2222
        privilege_command: [sudo, -n]  # the sudoers rules
        stock_kernel: linux-eos-arm
    baseline:
      mirror: /tmp/box/mirror
      tarball: linux-7.0.tar.xz
      b2sum: abc
    signing:
      host: hertz
      repo: {name: marfrit, dir: /srv/packages/arch/aarch64, url: http://hertz:8080/arch/aarch64}
    """

    static let registry = """
    hosts:
      fresnel: {roles: [target], arch: aarch64, distro: arch, wake: always, ssh: {address: fresnel.lan, user: ops}}
      boltzmann: {roles: [target, build], build_tier: primary, arch: aarch64, distro: arch, wake: always}
      ohm: {roles: [target], arch: aarch64, distro: arch, wake: always, ssh: {address: 192.0.2.15}}
      ampere: {roles: [target], arch: aarch64, distro: arch, wake: always}
      rooty: {roles: [target], arch: aarch64, distro: arch, wake: always, ssh: {address: 192.0.2.16, user: root}}
    """

    @Test func readsTheBoxConfigAndToleratesTheOtherSections() throws {
        let c = try AgentConfig.parse(Self.boxLike, file: "ka.yaml", stateDir: Self.state)
        #expect(c.ssh == AgentConfig.SSH(dir: "/tmp/box/ssh", identityFile: "/tmp/box/ssh/id_ed25519", knownHosts: "/tmp/box/ssh/known_hosts",
                                         configFile: "/tmp/box/ssh/ssh_config"))
        let fresnel = try #require(c.hosts[try HostName("fresnel")])
        #expect(fresnel.ssh?.address == "10.213.77.14" && fresnel.ssh?.port == 2222 && fresnel.ssh?.user == nil)
        #expect(fresnel.privilegeCommand == ["sudo", "-n"] && fresnel.stockKernel == "linux-eos-arm")
        let s = c.sshSettings(stateDir: Self.state)
        #expect(s.controlDir == "/var/lib/ka-state/ssh/cm" && s.logDir == "/var/lib/ka-state/ssh/log")
        #expect(s.configFile == "/tmp/box/ssh/ssh_config" && s.identityFile == "/tmp/box/ssh/id_ed25519")
    }

    @Test func defaultsLiveUnderTheStateDirNeverAtHome() throws {
        let c = try AgentConfig.fromEnvironment([:], stateDir: Self.state)
        #expect(c.file == nil)
        #expect(c.ssh.identityFile == "/var/lib/ka-state/ssh/id_ed25519" && c.ssh.knownHosts == "/var/lib/ka-state/ssh/known_hosts")
        #expect(c.ssh.configFile == nil)
        let partial = try AgentConfig.parse("ssh:\n  dir: /etc/ka/ssh\n  connect_timeout: 5s\n  control_persist: 120\n", file: "k.yaml", stateDir: Self.state)
        #expect(partial.ssh.identityFile == "/etc/ka/ssh/id_ed25519" && partial.ssh.connectTimeout == 5 && partial.ssh.controlPersist == 120)
    }

    /// Issue 20: KA_CONFIG cannot point ssh at $HOME/.ssh, by any of its four paths, through a symlink either.
    @Test func noSSHPathLiesUnderHome() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("ka-home-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home.appendingPathComponent(".ssh"), withIntermediateDirectories: true)
        let link = FileManager.default.temporaryDirectory.appendingPathComponent("ka-link-\(UUID().uuidString)")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: home.appendingPathComponent(".ssh"))
        defer { try? FileManager.default.removeItem(at: home); try? FileManager.default.removeItem(at: link) }
        for key in ["dir", "identity_file", "known_hosts", "config_file"] {
            for path in [home.appendingPathComponent(".ssh").path, link.path + "/id_ed25519"] {
                let text = "ssh:\n  \(key): \(path)\n"
                do {
                    _ = try AgentConfig.parse(text, file: "k.yaml", stateDir: Self.state, home: home.path)
                    Issue.record("ssh.\(key): \(path) was accepted")
                } catch let e as KAError {
                    #expect(e.message.hasPrefix("k.yaml:2:") && e.message.contains("$HOME"), "\(e)")
                }
            }
        }
        // the same paths are fine when $HOME is elsewhere
        _ = try AgentConfig.parse("ssh:\n  dir: \(home.path)/.ssh\n", file: "k.yaml", stateDir: Self.state, home: "/nonexistent-home")
    }

    @Test func errorsNameFileLineAndColumn() throws {
        let cases: [(String, String)] = [
            ("shh:\n  dir: /x\n", "k.yaml:1:1: unknown key 'shh'"),
            ("ssh:\n  identity_file: id_ed25519\n", "k.yaml:2:18: ssh.identity_file: identity_file 'id_ed25519' → not an absolute path"),
            ("ssh:\n  identity_file: ~/.ssh/id_ed25519\n", "k.yaml:2:18: ssh.identity_file: identity_file '~/.ssh/id_ed25519' → not an absolute path"),
            ("ssh:\n  known_hosts: /a b/known_hosts\n", "k.yaml:2:16: ssh.known_hosts: known_hosts '/a b/known_hosts' → holds ' '"),
            ("ssh:\n  connect_timeout: soon\n", "k.yaml:2:20: ssh.connect_timeout: expected seconds in 1…3600"),
            ("hosts:\n  fresnel:\n    ssh: {address: '-oProxyCommand=x'}\n", "k.yaml:3:20: hosts.fresnel.ssh.address: '-oProxyCommand=x' is not an IP address"),
            ("hosts:\n  fresnel:\n    ssh: {address: '10.0.0.5:2222'}\n", "k.yaml:3:20: hosts.fresnel.ssh.address: '10.0.0.5:2222' is not an IP address"),
            ("hosts:\n  fresnel:\n    ssh: {address: 'fresnel.lan:22'}\n", "k.yaml:3:20: hosts.fresnel.ssh.address: 'fresnel.lan:22' is not an IP address"),
            ("hosts:\n  fresnel:\n    ssh: {address: 10.0.0.1, port: 70000}\n", "k.yaml:3:36: hosts.fresnel.ssh.port: expected a port number 1…65535"),
            ("hosts:\n  fresnel:\n    ssh: {adress: 10.0.0.1}\n", "k.yaml:3:11: unknown key 'hosts.fresnel.ssh.adress'"),
            ("hosts:\n  fresnel:\n    ssh: {address: 10.0.0.1, user: 'Bad User'}\n", "k.yaml:3:36: hosts.fresnel.ssh.user: 'Bad User' is not a valid login name"),
            ("hosts:\n  Fresnel:\n    ssh: {address: 10.0.0.1}\n", "k.yaml:2:3: hosts: host 'Fresnel' → not a valid host name"),
            ("hosts:\n  fresnel:\n    privilege_command: []\n", "k.yaml:3:24: hosts.fresnel.privilege_command: expected an argv"),
        ]
        for (yaml, expected) in cases {
            do { _ = try AgentConfig.parse(yaml, file: "k.yaml", stateDir: Self.state); Issue.record("accepted: \(yaml)") }
            catch let e as KAError { #expect(e.kind == .refusal && e.message.hasPrefix(expected), "got \(e.message)") }
        }
        // an IPv6 address is one
        let v6 = try AgentConfig.parse("hosts:\n  fresnel:\n    ssh: {address: 'fd00::14'}\n", file: "k.yaml", stateDir: Self.state)
        #expect(v6.hosts[try HostName("fresnel")]?.ssh?.address == "fd00::14")
        do { _ = try AgentConfig.parse("shh: {}\n", file: "k.yaml", stateDir: Self.state) } catch let e as KAError {
            #expect(e.hint?.contains("did you mean 'ssh'?") == true)
        }
        do { _ = try AgentConfig.fromEnvironment(["KA_CONFIG": "/nonexistent/ka.yaml"], stateDir: Self.state); Issue.record("accepted") }
        catch let e as KAError { #expect(e.message.hasPrefix("KA_CONFIG /nonexistent/ka.yaml → cannot read")) }
    }

    @Test func hostsYamlTakesAnSSHKeyWithLocatedErrors() throws {
        let reg = try HostRegistry.parse(Self.registry, file: "hosts.yaml")
        #expect(try reg.entry(HostName("fresnel")).ssh?.address == "fresnel.lan")
        #expect(try reg.entry(HostName("ampere")).ssh == nil)
        do {
            _ = try HostRegistry.parse("hosts:\n  a: {roles: [target], arch: aarch64, distro: arch, wake: always, ssh: {address: 'a b'}}\n", file: "hosts.yaml")
            Issue.record("accepted")
        } catch let e as KAError { #expect(e.message.hasPrefix("hosts.yaml:2:82: hosts.a.ssh.address: 'a b' is not an IP address"), "\(e.message)") }
        // The shipped registry still loads.
        _ = try HostRegistry.load(Workspace(root: TestEnv.projectRoot))
    }

    @Test func fleetTransportsMergeHostsYamlAndKAConfigFieldByField() throws {
        let reg = try HostRegistry.parse(Self.registry, file: "hosts.yaml")
        let config = try AgentConfig.parse("hosts:\n  fresnel:\n    ssh: {address: 10.213.77.14}\n  boltzmann:\n    ssh: {address: 10.213.77.11, port: 2200}\n",
                                           file: "ka.yaml", stateDir: Self.state)
        let fleet = try FleetTransports(registry: reg, config: config, stateDir: Self.state)
        // KA_CONFIG's address wins, hosts.yaml's user stays.
        #expect(try fleet.endpoint(for: HostName("fresnel")) == SSHEndpoint(address: "10.213.77.14", port: 22, user: "ops"))
        #expect(try fleet.endpoint(for: HostName("boltzmann")) == SSHEndpoint(address: "10.213.77.11", port: 2200, user: "kbuild"))
        #expect(try fleet.endpoint(for: HostName("ohm")).user == "kbuild", "never root by default")
        #expect(try fleet.endpoint(for: HostName("rooty")).user == "root", "root only when written out")
        #expect(try fleet.transport(for: HostName("fresnel")).address == "ops@10.213.77.14:22")
        do { _ = try fleet.endpoint(for: HostName("ampere")); Issue.record("ampere has no address") } catch let e as KAError {
            #expect(e.message == "host ampere → no ssh address" && e.hint?.contains("hosts.ampere.ssh in ka.yaml") == true)
        }
        do { _ = try fleet.endpoint(for: HostName("fresnell")); Issue.record("unknown host") } catch let e as KAError {
            #expect(e.hint?.contains("did you mean 'fresnel'?") == true)
        }
        let stranger = try AgentConfig.parse("hosts:\n  stranger:\n    ssh: {address: 10.0.0.9}\n", file: "ka.yaml", stateDir: Self.state)
        do { _ = try FleetTransports(registry: reg, config: stranger, stateDir: Self.state); Issue.record("accepted") } catch let e as KAError {
            #expect(e.message == "ka.yaml:2:3: hosts.stranger → not a host of hosts.yaml")
        }
    }

    @Test func theShippedRegistryCoversEveryBoxHost() throws {
        let reg = try HostRegistry.load(Workspace(root: TestEnv.projectRoot))
        for h in ["boltzmann", "fermi", "hertz", "fresnel", "ohm"] { #expect(reg.hosts[try HostName(h)] != nil) }
    }
}
