"""Ansible's linear strategy run through Mitogen (pinned in pyproject.toml).

Mitogen keeps one Python interpreter per managed host for the whole run and
sends it each module over that channel, instead of building, copying and
starting a new interpreter for every task. The plays, their order and every
module's result are the same; an apply takes less than half the time (the
lab's no-change run of playbooks/site.yml: 42 s without, 17 s with, on the
2-core lab machine). Arguments still never reach a command line.

Mitogen's CPU pinning is switched off. On a machine of fewer than 4 cores it
pins its connection process to one core and everything else (the strategy,
each task's worker, and the local processes it starts: the lab's modules,
and with them `nproc`) to the other, so work Ansible spreads over the cores
ran on one: the register's password hashes (600 took 25.7 s pinned, 12.5 s
with Ansible's own strategy) and the DKIM keys of new domains.

Mitogen's own file is found through the package, not through a path in the
virtual environment written into ansible.cfg.
"""

import ansible_mitogen.affinity
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

# The base Policy assigns nothing: every process keeps the machine's CPUs.
ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

__all__ = ["StrategyModule"]
