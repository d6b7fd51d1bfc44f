"""Ansible's linear strategy run through Mitogen (pinned in pyproject.toml).

Mitogen keeps one Python interpreter per managed host for the whole run and
sends it each module over that channel, instead of building, copying and
starting a new interpreter for every task. The plays, their order and every
module's result are the same; an apply takes less than half the time (the
lab's no-change run of playbooks/site.yml: 42 s without, 17 s with, on the
2-core lab machine). Arguments still never reach a command line.

Mitogen's own file is found through the package, not through a path in the
virtual environment written into ansible.cfg.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
