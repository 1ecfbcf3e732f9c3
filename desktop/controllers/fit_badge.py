"""A model's fit badge: how it sits in this machine's memory, and across the window's cluster.

``ModelLibrary`` plans each listing against this machine and, with a cluster
(``llama-desk --hosts`` / ``--ranks``), across it too (``models.memory.cluster_plan``); the
menus, the first-run panel and Manage Models draw the ``FitBadge`` it gives. A model that won't
fit this machine gets its badge from ``cluster_badge``: 'cluster' ("fits on 2 Macs") when every
rank holds its share, else 'wont_fit' with the cluster's figures in the tooltip.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.memory.cluster_plan import ClusterPlan, describe_cluster
from models.memory.planner import FitReport


@dataclass(frozen=True)
class FitBadge:
    """How a model sits in this machine's memory: 'fits', 'tight' or 'wont_fit', and why; or
    'cluster': it won't fit this machine alone but fits across the window's cluster."""

    verdict: str
    detail: str
    report: FitReport | None = None  # the memory planner's fit, when there is a plan
    cluster: ClusterPlan | None = None  # its plan across the cluster, with a cluster
    machines: str = "Macs"  # what the cluster's ranks are called ("ranks" for --ranks N)

    @property
    def label(self) -> str:
        if self.verdict == "cluster" and self.cluster is not None:
            return f"fits on {len(self.cluster.ranks)} {self.machines}"
        return {"fits": "fits", "tight": "tight", "wont_fit": "won't fit"}.get(self.verdict, self.verdict)


def cluster_badge(report, cluster, hosts) -> FitBadge:
    """The badge of a model whose ``report`` (this machine) says 'wont_fit', across ``hosts``
    (a ``HostFile``) by ``cluster`` (its ``ClusterPlan``)."""
    local = all(host.is_local for host in hosts.hosts)  # --ranks N: ranks on this machine
    machines = "ranks" if local else "Macs"
    across = describe_cluster(cluster, machines, local)
    if not cluster.fits:
        return FitBadge("wont_fit", f"{report.summary} {across}", report, cluster, machines)
    alone = f"This machine alone: {report.summary}"
    return FitBadge("cluster", f"{across} Loads across the cluster. {alone}", report, cluster, machines)
