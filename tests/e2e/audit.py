"""The accessibility audit of the browser tests: axe-core (bundled by the
axe-playwright-python package, no CDN) run on the page as it is."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe

# Browser contexts whose pages are audited: axe-core sets style attributes
# while it measures, which the site's Content-Security-Policy (style-src
# 'self') would block and report; the policy itself is tested elsewhere.
AUDITED_CONTEXT = {"bypass_csp": True}

# WCAG 2.2's minimum target size (24 px) is off in axe by default: on here.
OPTIONS = {"resultTypes": ["violations"], "rules": {"target-size": {"enabled": True}}}
FAILING = {"serious", "critical"}

_axe = Axe()


def violations(page, *, impacts=FAILING) -> list[str]:
    """One line per failing element: rule, impact, selector, axe's summary."""
    results = _axe.run(page, options=OPTIONS).response
    lines = []
    for violation in results["violations"]:
        if violation["impact"] not in impacts:
            continue
        for node in violation["nodes"]:
            summary = node.get("failureSummary", "").replace("\n", " ")
            lines.append(f"{violation['id']} ({violation['impact']}) {node['target']}: {summary}")
    return lines
