/** RabbitMQ adapter (`amqp:`, `amqps:`) through amqplib. */
import type { Broker } from "../ports/broker.ts";
import type { BrokerOptions } from "./broker.ts";

/** Broker backed by a RabbitMQ server. */
export class AmqpBroker {
  /** Connects to RabbitMQ at `url`. */
  static async connect(
    _url: string,
    _options: Required<Omit<BrokerOptions, "connectionName">> & BrokerOptions,
  ): Promise<Broker> {
    // TODO: the RabbitMQ adapter is not written yet; use memory: until it is.
    throw new Error("broker URL scheme amqp: is not available yet; use memory:");
  }
}
