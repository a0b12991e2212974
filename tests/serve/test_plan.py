"""The cycle-time planner on its own: which optional explanations fit the budget left."""
from edge.serve.inspector import plan


def test_what_fits_the_remaining_budget_is_inline():
    assert plan(("gradcam", "ig", "shap"), 100.0, {"ig": [30.0, 20.0], "shap": [40.0]}) == (["ig", "shap"], [])


def test_the_remaining_budget_is_not_charged_again_for_the_work_already_done():
    # 60 ms left after prediction and Grad-CAM: a 55 ms IG fits (the old planner took Grad-CAM's cost
    # off a second time and deferred it).
    assert plan(("ig",), 60.0, {"ig": [55.0]}) == (["ig"], [])


def test_kinds_share_the_budget_in_order():
    assert plan(("ig", "shap"), 100.0, {"ig": [70.0], "shap": [40.0]}) == (["ig"], ["shap"])
    assert plan(("ig", "shap"), 100.0, {"ig": [120.0], "shap": [40.0]}) == (["shap"], ["ig"])
    # the cheap classifier extras first: evidence per sensor, then the guided map, then IG and SHAP
    costs = {"sensors": [4.0], "guided": [5.0], "ig": [3.0], "shap": [1.0]}
    assert plan(("shap", "ig", "guided", "sensors"), 10.0, costs) == (["sensors", "guided", "shap"], ["ig"])


def test_an_unmeasured_cost_is_deferred_not_guessed():
    assert plan(("ig", "shap"), 1e9, {"ig": [10.0, None], "shap": [None]}) == ([], ["ig", "shap"])


def test_kinds_not_requested_or_without_a_model_are_neither():
    assert plan(("gradcam", "sentence"), 100.0, {"ig": [1.0], "shap": [1.0]}) == ([], [])
    assert plan(("ig", "shap"), 100.0, {"ig": [], "shap": [1.0]}) == (["shap"], [])


def test_a_spent_budget_defers_everything():
    assert plan(("ig", "shap"), -5.0, {"ig": [0.0], "shap": [1.0]}) == ([], ["ig", "shap"])
