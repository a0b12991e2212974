// A second, independent OPC UA client for the results test: node-opcua (a JavaScript implementation,
// nothing shared with asyncua). Subscribes to ResultReadyEventType on EdgeXai and prints one JSON line
// per event; "SUBSCRIBED" once the monitored item is live; exits after `count` events or `timeout_s`.
//
//   node tests/line/opcua_client.js opc.tcp://127.0.0.1:4840/edge-xai/ 20 30
//
// NODE_PATH must hold node-opcua-client (tests/setup.sh installs it under .node-opcua/node_modules).
const {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, AttributeIds, TimestampsToReturn,
  constructEventFilter, makeBrowsePath,
} = require("node-opcua-client");

const NAMESPACE = "urn:edge-xai:machine-vision";
const FIELDS = ["ResultId", "StationId", "Class", "Reject", "Evaluation"];

async function main() {
  const [url, countArg, timeoutArg] = process.argv.slice(2);
  const count = Number(countArg || 1);
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 3, initialDelay: 200 },
  });
  await client.connect(url);
  const session = await client.createSession();
  const namespaces = await session.readNamespaceArray();
  const idx = namespaces.indexOf(NAMESPACE);
  if (idx < 0) throw new Error(`namespace ${NAMESPACE} not on the server: ${namespaces}`);
  const found = await session.translateBrowsePath(makeBrowsePath("RootFolder", `/Objects/${idx}:EdgeXai`));
  const root = found.targets[0].targetId;
  const subscription = await session.createSubscription2({
    requestedPublishingInterval: 5, requestedLifetimeCount: 600, requestedMaxKeepAliveCount: 20,
    maxNotificationsPerPublish: 1000, publishingEnabled: true, priority: 1,
  });
  const filter = constructEventFilter(FIELDS.map((f) => `${idx}:${f}`));
  const item = await subscription.monitor(
    { nodeId: root, attributeId: AttributeIds.EventNotifier },
    { queueSize: 1000, filter, discardOldest: false, samplingInterval: 0 },
    TimestampsToReturn.Neither,
  );
  let seen = 0;
  const done = new Promise((resolve) => {
    item.on("changed", (values) => {
      const event = {};
      FIELDS.forEach((f, i) => { event[f] = values[i].value; });
      console.log(JSON.stringify(event));
      seen += 1;
      if (seen >= count) resolve();
    });
    setTimeout(resolve, 1000 * Number(timeoutArg || 30));
  });
  console.log("SUBSCRIBED");
  await done;
  await subscription.terminate();
  await session.close();
  await client.disconnect();
}

main().then(() => process.exit(0), (err) => { console.error(String(err && err.stack || err)); process.exit(1); });
