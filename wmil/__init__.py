"""wmil's ROS 2 layer: the planner, simulator (and learner) nodes over ``wmil_core``.

Nodes are thin: message conversions live in :mod:`wmil_core.messages`, the watchdog in
:mod:`wmil.watchdog`, the simulator in :mod:`wmil.simulation`, and what is read from a model
bundle in :mod:`wmil.model`; none of those import rclpy.
"""
