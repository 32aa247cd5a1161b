// A foreign OPC UA client (node-opcua) looks at a conforming simulator:
// it browses Objects/Machines in the spec's namespace and reads each
// machine's Identification/Manufacturer. Prints one line: "RESULT " and JSON.
// Usage: node opcua_browse.js <endpoint url> <spec namespace uri>
"use strict";
const { OPCUAClient, AttributeIds, makeBrowsePath } = require("node-opcua-client");

async function main() {
  const [url, nsUri] = process.argv.slice(2);
  const client = OPCUAClient.create({
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 2, initialDelay: 200, maxDelay: 1000 },
  });
  await client.connect(url);
  const session = await client.createSession();
  try {
    const namespaces = await session.readNamespaceArray();
    const ns = namespaces.indexOf(nsUri);
    if (ns < 0) throw new Error(`namespace ${nsUri} not found in ${namespaces}`);
    const folder = await session.translateBrowsePath(makeBrowsePath("RootFolder", `/Objects/${ns}:Machines`));
    if (!folder.targets || !folder.targets.length) throw new Error("no Objects/Machines folder");
    const browsed = await session.browse(folder.targets[0].targetId);
    const machines = browsed.references.map((r) => r.browseName.name);
    const manufacturer = {};
    for (const m of machines) {
      const path = `/Objects/${ns}:Machines/${ns}:${m}/${ns}:Identification/${ns}:Manufacturer`;
      const found = await session.translateBrowsePath(makeBrowsePath("RootFolder", path));
      const dv = await session.read({ nodeId: found.targets[0].targetId, attributeId: AttributeIds.Value });
      manufacturer[m] = dv.value.value;
    }
    console.log("RESULT " + JSON.stringify({ namespaceIndex: ns, machines, manufacturer }));
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().catch((err) => {
  console.error(err && err.message ? err.message : String(err));
  process.exit(1);
});
