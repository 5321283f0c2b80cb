"""Built-in scripted experts; importing this module registers them.

* ``cartpole-energy`` (dmc/cartpole-swingup, dmc/cartpole-balance): energy swing-up + LQR.
* ``reacher-feedback`` (dmc/reacher-easy, dmc/reacher-hard): IK + computed-torque PD.
* ``jaco-reach`` (jaco/reach-site, jaco/reach-duplo): damped-least-squares Cartesian control.
"""

from wmil_core.experts.cartpole import CartpoleEnergy
from wmil_core.experts.jaco import JacoReach
from wmil_core.experts.reacher import ReacherFeedback

__all__ = ["CartpoleEnergy", "JacoReach", "ReacherFeedback"]
