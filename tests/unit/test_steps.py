from sop.steps import STEPS, steps_of_play


def test_plays_name_their_sop_steps():
    assert steps_of_play("SOP steps 1-2: load") == [1, 2]
    assert steps_of_play("SOP step 4: create the mailboxes") == [4]
    assert steps_of_play("Something else") == []


def test_standard_times_add_up_to_the_sop():
    assert sum(s.standard_minutes for s in STEPS.values()) == 135
    assert sum(STEPS[n].standard_minutes for n in range(3, 9)) == 90
