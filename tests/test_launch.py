"""launch/planner.launch.py, read with ast (no launch package here), and config/wmil.yaml."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from rclpy.parameter import Parameter

from wmil import learner_node, planner_params, sim_node
from wmil.ros_io import param_type_name

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "planner.launch.py"
CONFIG = ROOT / "config" / "wmil.yaml"


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    """Every call of ``name(...)`` in ``tree``."""
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords if k.arg}


def console_scripts() -> dict[str, str]:
    """name -> target of the console_scripts in setup.py's entry_points."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for call in calls(tree, "setup"):
        entry = keywords(call).get("entry_points")
        if isinstance(entry, ast.Dict):
            for k, v in zip(entry.keys, entry.values):
                if isinstance(k, ast.Constant) and k.value == "console_scripts":
                    lines = ast.literal_eval(v)
                    return {s.split("=")[0].strip(): s.split("=")[1].strip() for s in lines}
    return {}


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text())


def test_launch_arguments_and_defaults(tree):
    args = {}
    for call in calls(tree, "DeclareLaunchArgument"):
        kw = keywords(call)
        value = kw["default_value"]
        args[ast.literal_eval(call.args[0])] = (f"<{value.id}>" if isinstance(value, ast.Name)
                                                else ast.literal_eval(value))
        assert ast.literal_eval(kw["description"])
    assert args == {"model": "<default_model>", "task": "", "use_sim": "true",
                    "use_learner": "false", "run": "", "rate": "25.0", "sim_mode": "lockstep"}
    # the default model is the shipped bundle, installed under share/wmil/models
    assert 'default_model = str(share / "models" / "reacher-easy")' in LAUNCH.read_text()
    assert (ROOT / "models" / "reacher-easy" / "manifest.json").is_file()
    assert "def generate_launch_description" in LAUNCH.read_text()


def test_every_executable_is_a_console_script(tree):
    nodes = {}
    for call in calls(tree, "Node"):
        kw = keywords(call)
        assert ast.literal_eval(kw["package"]) == "wmil"
        nodes[ast.literal_eval(kw["executable"])] = ast.literal_eval(kw["name"])
        if kw["executable"].value != "planner_node":
            assert "condition" in kw  # sim: use_sim, learner: use_learner
    assert nodes == {"planner_node": "wmil_planner", "sim_node": "wmil_sim",
                     "learner_node": "wmil_learner"}
    scripts = console_scripts()
    missing = sorted(set(nodes) - set(scripts))
    assert not missing, f"add to setup.py console_scripts: {missing}"
    assert scripts["planner_node"] == "wmil.planner_node:main"
    assert scripts["sim_node"] == "wmil.sim_node:main"


def test_launch_reads_the_shared_parameter_file(tree):
    # params = str(share / "config" / "wmil.yaml"), share from get_package_share_directory
    assigned = {t.id: node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert ast.unparse(assigned["params"]) == "str(share / 'config' / 'wmil.yaml')"
    assert "get_package_share_directory('wmil')" in ast.unparse(assigned["share"])
    # ... and every node gets that file first, its own overrides after it
    nodes = calls(tree, "Node")
    assert len(nodes) == 3
    for call in nodes:
        first = keywords(call)["parameters"].elts[0]
        assert isinstance(first, ast.Name) and first.id == "params", ast.unparse(call)
    setup = (ROOT / "setup.py").read_text()
    assert 'glob("config/*.yaml")' in setup and 'glob("launch/*.launch.py")' in setup


@pytest.mark.parametrize("node, specs", [
    ("wmil_planner", planner_params.PARAMETERS), ("wmil_sim", sim_node.PARAMETERS),
    ("wmil_learner", learner_node.PARAMETERS),
])
def test_config_names_declared_parameters_with_their_types(node, specs):
    data = yaml.safe_load(CONFIG.read_text())
    params = data[node]["ros__parameters"]
    declared = {s.name: s for s in specs}
    for name, value in params.items():
        assert name in declared, f"{node}: {name} is not a declared parameter"
        want = param_type_name(declared[name].default)
        got = param_type_name(Parameter.Type.from_parameter_value(value))
        assert got == want, f"{node}.{name}: {got} in the YAML, declared {want}"
