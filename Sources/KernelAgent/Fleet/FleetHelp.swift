import Foundation

/// `ka help fleet`: what a checkout's `fleet/` must hold, in ka's own words (a user's `fleet/README.md` is theirs
/// and may say nothing about ka).
package enum FleetHelp {
    package static let text = """
    A checkout holds one manifest per host, fleet/<host>.yaml, and patches/<kind>/<scope>/… . That is all ka needs.

    The manifest (fleet/<host>.yaml; unknown keys are errors, with a did-you-mean):
      baseline: {tree|repo: <url>, ref: <tag or commit>, commit: <40 hex>}   required: tree (or repo) and ref
      includes|include: [<path under patches/>, …]   a dir (trailing / optional) or one .patch; or {path, apply_order}
      apply_order: [<include>, …]                    optional explicit order (else: kind order, then names)
      scopes: [<kind>/<scope>, …]                    every patch under a scope dir
      excluded: [<path>, …]                          documented omissions; never applied
      package: {name: linux-<suffix>, template_at: <recipe dir in the packages checkout>}
      kernel_suffix: <suffix>                        default: package.name without its linux- prefix
      build_host: {primary: <host>, fallback: <host or list>}
      install: {mode: alongside|replace, alongside: <stock package>}
      config: {file: fleet/config/<host>.config, olddefconfig: true}
      verify: {dt: […], probes: […], burn_in_hours: N, bar0: {timeout: 180, modules: [m]} | {skip: "why"}}
      host: <host>                                   optional; the file name is the host (a mismatch is an error)
      patch_authoring_context: <text>                informational (top level or under baseline)
      infra_opt_in: true                             required before an infra host is ever a target

    The registry (which hosts exist, their roles, the build routing):
      With fleet/hosts.yaml, that file (it wins).
      Without it, ka derives one:
        every fleet/<host>.yaml is a target;
        hosts named by build_host.primary / build_host.fallback are build hosts, in that order;
        the design's infra hosts (noether, hertz, dcw2, dcw3, turing, nuccies) stay infra unless a manifest opts in;
        KA_CONFIG's signing.host signs; addresses, users, arch and distro come from KA_CONFIG hosts.<host>
        (arch defaults to aarch64, distro to arch).

    Outputs: ka promote <host> writes build/<host>/<baseline.ref>/0001-<host>-cumulative-series.patch,
    manifest.lock and apply-report.txt; ka build reads the lock there. Keep build/ in .gitignore.
    First run: ka doctor says what is missing, each with a fix line.
    """
}
