"""The wrapper's account of hosts it could not reach (sop apply's report)."""

from sop.apply import Progress, _unreachable_notes


def _events(progress: Progress, play: str, host: str, task: str) -> None:
    progress.handle({"event": "playbook_on_play_start", "event_data": {"play": play}})
    progress.handle({"event": "runner_on_unreachable", "event_data": {
        "host": host, "task": task,
        "res": {"unreachable": True, "msg": "ssh: connect to host: No route to host"}}})


def test_a_skipped_secondary_is_reported_but_fails_nothing():
    lines = []
    progress = Progress(out=lines.append)
    _events(progress, "SOP step 6: serve the zone from the secondary name servers", "ns2",
            "See whether the secondary is up")
    # ignore_unreachable: Ansible counts it as ignored, not dark.
    outcome = progress.unreachable_outcome({"dark": {}, "ignored": {"ns2": 1}}, run_ok=True)
    assert outcome == [{"host": "ns2", "task": "See whether the secondary is up",
                        "message": "ssh: connect to host: No route to host",
                        "steps": [6], "skipped": True}]
    assert progress.failures == [] and progress.step_failed == set()
    assert any("TIDAK TERJANGKAU" in line and "ns2" in line for line in lines)
    (note,) = _unreachable_notes(outcome)
    assert note.startswith("Server ns2 tidak terjangkau (langkah 6) dan dilewati")


def test_an_unreachable_mail_host_fails_its_step_and_says_why():
    progress = Progress(out=lambda _line: None)
    _events(progress, "SOP step 3: make sure the servers have storage for the quotas",
            "mail1", "Read the mounted file systems")
    outcome = progress.unreachable_outcome({"dark": {"mail1": 1}}, run_ok=False)
    assert [u["skipped"] for u in outcome] == [False]
    assert progress.step_failed == {3}
    assert progress.failures == [
        "mail1: Read the mounted file systems: tidak terjangkau: "
        "ssh: connect to host: No route to host"]
    (note,) = _unreachable_notes(outcome)
    assert "langkah 3" in note and "(termasuk DNS) tidak dijalankan" in note



def test_an_unreachable_host_is_part_of_the_failure_when_the_run_stops():
    # The playbook turns an unreachable mail host into a failure of its own.
    progress = Progress(out=lambda _line: None)
    _events(progress, "SOP step 3: reach the mail and web servers before anything changes",
            "mail1", "Reach every mail and web server")
    progress.handle({"event": "runner_on_failed", "event_data": {
        "host": "localhost", "task": "Stop the run when a mail or web server cannot be reached",
        "res": {"failed": True, "msg": "Cannot reach mail1 over SSH"}}})
    outcome = progress.unreachable_outcome({"dark": {}, "ignored": {"mail1": 1},
                                            "failures": {"localhost": 1}}, run_ok=False)
    assert [u["skipped"] for u in outcome] == [False]
    assert progress.step_failed == {3}
    assert progress.failures == ["localhost: Stop the run when a mail or web server cannot be "
                                 "reached: Cannot reach mail1 over SSH"]
