"""The conformance kit: checks that a machine implements the line interface spec.

    catalogue.py   profiles -> conformance units -> test cases, generated from the spec
    probe.py       the machine under test, reached through the gateway's adapters
    through_gateway.py  integration mode: a vendor machine read through its mapping by the gateway
    checks/        the checks, by layer (static, presence, behaviour and negative, data quality, resilience)
    runner.py      runs the selected cases and collects results with their evidence
    report.py      JUnit XML, JSON, HTML and a compliance statement, each with its SHA-256
    cli.py         `linegw conformance`

The vendor guide is README.md beside this file.
"""

KIT_VERSION = "1.1.0"
