"""The robot side: one ``HandRobot`` interface, its backends (proxy-real MuJoCo world, ROS 2,
fake), joint-order conversion, safety limits and the camera pipeline."""
