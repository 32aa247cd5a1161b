"""Generic protocol servers the equipment simulators are built on."""
