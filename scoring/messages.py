"""What the commands and the service say when no champion is registered: which versions are, and how to use one."""

from __future__ import annotations

from scoring import registry


def no_champion_message(doing: str, use_with: str | None = None) -> str:
    """'No champion ...: <doing>.', naming the registered challenger (or latest version), why the gate kept it back,
    and how to use it: `use_with` ("Score", "Compare") with --model, or promote it.

    The registry must be configured (`registry.configure()`); a registry that cannot be asked raises TrackingError.
    """
    versions = registry.versions()
    if not versions:
        return f"No champion model is registered: {doing}. Train one with `tiering train DATA`."
    challenger = registry.alias_version(registry.CHALLENGER)  # version searches do not list aliases
    named = challenger or versions[-1]
    role = "registered as challenger" if challenger else "registered"
    reason = named.tags.get("gate_reason")
    kept = f" (kept back by the gate: {reason.rstrip('.')})" if reason else ""
    how = f"{use_with} with it using --model {named.uri}, or promote it" if use_with else "Promote it"
    others = [version.version for version in versions if version.version != named.version]
    also = ""
    if others:
        shown = ", ".join(others[-5:]) + (f" and {len(others) - 5} earlier" if len(others) > 5 else "")
        one = len(others) == 1
        also = f" {'Version' if one else 'Versions'} {shown} {'is' if one else 'are'} also registered."
    return (
        f"No champion: version {named.version} is {role}{kept}; {doing}. "
        f"{how} with `tiering promote {named.version}`.{also}"
    )
