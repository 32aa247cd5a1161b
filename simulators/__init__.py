"""Equipment simulators: machines that look like real equipment to a real client.

`machine.py` is the spec-level machine (state model, commands, alarms, recipes,
events); `models/` holds the process physics per class; `servers/` the protocol
servers and bindings (conforming and vendor dialects); `dialects/` turns a
vendor file (`interface_spec/vendors/`) into what a dialect server serves; `faults.py` the misbehaviour; `line.py` starts a whole line.
"""
