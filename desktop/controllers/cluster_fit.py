"""A model's fit badge across the window's cluster (``llama-desk --hosts`` / ``--ranks``).

``ModelLibrary`` plans each listing against this machine and, with a cluster, across it too
(``models.memory.cluster_plan``); a model that won't fit this machine gets its badge here:
'cluster' ("fits on 2 Macs") when every rank holds its share, else 'wont_fit' with the
cluster's figures in the tooltip.
"""

from __future__ import annotations

from desktop.controllers.model_library import FitBadge
from models.memory.cluster_plan import describe_cluster


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
