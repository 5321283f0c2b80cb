"""Launch the wmil planner, with the simulator (``use_sim``) and the learner (``use_learner``).

    ros2 launch wmil planner.launch.py            # the shipped model, sim in the loop
    ros2 launch wmil planner.launch.py model:=/path/to/bundle use_sim:=false

Parameters come from ``config/wmil.yaml`` in the package's share directory (the file
``wmil stack`` reads too); the arguments below override single values. With the simulator in
lockstep the planner plans once per observation (``trigger: observation``), otherwise on its
timer at ``rate``.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description() -> LaunchDescription:
    """The wmil nodes with their parameter file and launch arguments."""
    share = Path(get_package_share_directory("wmil"))
    params = str(share / "config" / "wmil.yaml")
    default_model = str(share / "models" / "reacher-easy")  # the shipped bundle
    model = LaunchConfiguration("model")
    task = LaunchConfiguration("task")
    use_sim = LaunchConfiguration("use_sim")
    use_learner = LaunchConfiguration("use_learner")
    run = LaunchConfiguration("run")
    rate = LaunchConfiguration("rate")
    sim_mode = LaunchConfiguration("sim_mode")
    trigger = PythonExpression([
        "'observation' if '", use_sim, "'.lower() == 'true' and '", sim_mode,
        "' == 'lockstep' else 'timer'"])

    arguments = [
        DeclareLaunchArgument("model", default_value=default_model,
                              description="model bundle directory (default: the shipped one)"),
        DeclareLaunchArgument("task", default_value="",
                              description="simulated registry task (empty: the model's)"),
        DeclareLaunchArgument("use_sim", default_value="true",
                              description="start wmil_sim (false: a real robot's topics)"),
        DeclareLaunchArgument("use_learner", default_value="false",
                              description="start wmil_learner (online learning, hot swaps)"),
        DeclareLaunchArgument("run", default_value="",
                              description="training run the learner continues (use_learner)"),
        DeclareLaunchArgument("rate", default_value="25.0",
                              description="planning rate in timer mode, Hz"),
        DeclareLaunchArgument("sim_mode", default_value="lockstep",
                              description="lockstep (one step per command) or realtime"),
    ]
    planner = Node(
        package="wmil", executable="planner_node", name="wmil_planner", output="screen",
        parameters=[params, {
            "model_dir": ParameterValue(model, value_type=str),
            "rate": ParameterValue(rate, value_type=float),
            "trigger": ParameterValue(trigger, value_type=str),
        }])
    sim = Node(
        package="wmil", executable="sim_node", name="wmil_sim", output="screen",
        condition=IfCondition(use_sim),
        parameters=[params, {
            "task": ParameterValue(task, value_type=str),
            "model_dir": ParameterValue(model, value_type=str),
            "mode": ParameterValue(sim_mode, value_type=str),
        }])
    learner = Node(
        package="wmil", executable="learner_node", name="wmil_learner", output="screen",
        condition=IfCondition(use_learner),
        parameters=[params, {"run": ParameterValue(run, value_type=str)}])
    return LaunchDescription([*arguments, planner, sim, learner])
