/**
 * The in-cluster MySQL, MongoDB and RabbitMQ servers, and the connection URLs the apps get. A
 * server whose URL is set in stack config (`authDatabaseUrl` and `gatewayDatabaseUrl`,
 * `storageUrl`, `brokerUrl`) is not deployed, and that URL is used instead.
 */
import * as pulumi from "@pulumi/pulumi";
import { BackingService } from "./components/backing-service.ts";
import type { BackingSizing, StackConfig } from "./config.ts";

/** UID of the server process in the official mysql, mongo and rabbitmq images. */
const OFFICIAL_IMAGE_USER_ID = 999;

/** Database, user and vhost names the in-cluster servers are created with. */
const MYSQL_DATABASE = "mp3converter";
const MYSQL_USER = "mp3converter";
const MONGODB_ROOT_USER = "root";
const MONGODB_DATABASE = "mp3converter";
const RABBITMQ_USER = "mp3converter";

export interface ConnectionUrls {
  authDatabaseUrl: pulumi.Output<string>;
  gatewayDatabaseUrl: pulumi.Output<string>;
  storageUrl: pulumi.Output<string>;
  brokerUrl: pulumi.Output<string>;
  /** The servers deployed in the cluster, which the apps wait for. */
  servers: BackingService[];
}

/** Deploys the backing servers the stack needs and returns every app's connection URL. */
export function deployBackingServices(
  config: StackConfig,
  namespace: pulumi.Input<string>,
  opts: pulumi.ComponentResourceOptions,
): ConnectionUrls {
  const { secrets } = config;
  const servers: BackingService[] = [];
  const common = { namespace, storageClass: config.storageClass, userId: OFFICIAL_IMAGE_USER_ID };

  let mysqlUrl: pulumi.Output<string> | undefined;
  if (secrets.mysqlRootPassword && secrets.mysqlPassword) {
    const mysql = deployMysql(
      config.mysql,
      common,
      secrets.mysqlRootPassword,
      secrets.mysqlPassword,
      opts,
    );
    servers.push(mysql);
    mysqlUrl = urlWithPassword(
      secrets.mysqlPassword,
      (password) => `mysql://${MYSQL_USER}:${password}@${mysql.host}:3306/${MYSQL_DATABASE}`,
    );
  }

  let storageUrl = secrets.storageUrl;
  if (!storageUrl && secrets.mongodbPassword) {
    const mongodb = deployMongodb(config.mongodb, common, secrets.mongodbPassword, opts);
    servers.push(mongodb);
    storageUrl = urlWithPassword(
      secrets.mongodbPassword,
      (password) =>
        `mongodb://${MONGODB_ROOT_USER}:${password}@${mongodb.host}:27017/${MONGODB_DATABASE}` +
        "?authSource=admin",
    );
  }

  let brokerUrl = secrets.brokerUrl;
  if (!brokerUrl && secrets.rabbitmqPassword) {
    const rabbitmq = deployRabbitmq(config.rabbitmq, common, secrets.rabbitmqPassword, opts);
    servers.push(rabbitmq);
    brokerUrl = urlWithPassword(
      secrets.rabbitmqPassword,
      (password) => `amqp://${RABBITMQ_USER}:${password}@${rabbitmq.host}:5672`,
    );
  }

  // readStackConfig guarantees that each URL is either set or has its server's password.
  const required = (url: pulumi.Output<string> | undefined, what: string) => {
    if (!url)
      throw new Error(`no ${what} URL: set it in stack config or set the server's password`);
    return url;
  };
  return {
    authDatabaseUrl: required(secrets.authDatabaseUrl ?? mysqlUrl, "auth database"),
    gatewayDatabaseUrl: required(secrets.gatewayDatabaseUrl ?? mysqlUrl, "gateway database"),
    storageUrl: required(storageUrl, "storage"),
    brokerUrl: required(brokerUrl, "broker"),
    servers,
  };
}

type CommonArgs = { namespace: pulumi.Input<string>; storageClass: string; userId: number };

/** Builds a secret URL with the password percent-encoded, since it may contain `@` or `/`. */
function urlWithPassword(
  password: pulumi.Output<string>,
  build: (encodedPassword: string) => string,
): pulumi.Output<string> {
  return pulumi.secret(password.apply((value) => build(encodeURIComponent(value))));
}

// NOTE: auth and gateway share this one database and user, because the official image creates
// only one of each without init scripts. Their tables do not overlap (users, jobs); give each
// its own database with `authDatabaseUrl` and `gatewayDatabaseUrl` where that matters.
function deployMysql(
  sizing: BackingSizing,
  common: CommonArgs,
  rootPassword: pulumi.Output<string>,
  password: pulumi.Output<string>,
  opts: pulumi.ComponentResourceOptions,
): BackingService {
  return new BackingService(
    "mysql",
    {
      ...common,
      sizing,
      dataPath: "/var/lib/mysql",
      ports: [{ name: "mysql", port: 3306 }],
      secrets: { MYSQL_ROOT_PASSWORD: rootPassword, MYSQL_USER, MYSQL_PASSWORD: password },
      env: { MYSQL_DATABASE },
      // `mysqladmin ping` exits 0 once the server responds, even without credentials. Over TCP it
      // fails during first-start initialization, which runs with networking off.
      readinessCommand: ["mysqladmin", "ping", "--host=127.0.0.1", "--silent"],
      livenessPort: "mysql",
    },
    opts,
  );
}

// A standalone mongod, not a replica set: GridFS needs no transactions or change streams, and a
// standalone acknowledges write concern "majority" once the write is journaled. A replica set
// would also need a key file for member authentication; use a managed MongoDB (`storageUrl`)
// where replication matters.
function deployMongodb(
  sizing: BackingSizing,
  common: CommonArgs,
  rootPassword: pulumi.Output<string>,
  opts: pulumi.ComponentResourceOptions,
): BackingService {
  return new BackingService(
    "mongodb",
    {
      ...common,
      sizing,
      dataPath: "/data/db",
      ports: [{ name: "mongodb", port: 27017 }],
      secrets: {
        MONGO_INITDB_ROOT_USERNAME: MONGODB_ROOT_USER,
        MONGO_INITDB_ROOT_PASSWORD: rootPassword,
      },
      // By default WiredTiger sizes its cache from the node's memory, not the container limit.
      args: ["mongod", "--wiredTigerCacheSizeGB", "0.25"],
      // `ping` needs no authentication.
      readinessCommand: ["mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"],
      livenessPort: "mongodb",
    },
    opts,
  );
}

function deployRabbitmq(
  sizing: BackingSizing,
  common: CommonArgs,
  password: pulumi.Output<string>,
  opts: pulumi.ComponentResourceOptions,
): BackingService {
  return new BackingService(
    "rabbitmq",
    {
      ...common,
      sizing,
      dataPath: "/var/lib/rabbitmq",
      ports: [
        { name: "amqp", port: 5672 },
        { name: "management", port: 15672 },
      ],
      secrets: { RABBITMQ_DEFAULT_USER: RABBITMQ_USER, RABBITMQ_DEFAULT_PASS: password },
      readinessCommand: ["rabbitmq-diagnostics", "-q", "check_port_connectivity"],
      livenessPort: "amqp",
    },
    opts,
  );
}
