/**
 * Serializer helpers for threads shared between LangGraph.js and LangGraph (Python) agents.
 *
 * LangGraph.js's `JsonPlusSerializer` writes and reads the types `"json"` and `"bytes"`; Python's
 * `JsonPlusSerializer` writes `"msgpack"` (and `"null"`, `"bytes"`, ...). Checkpointd stores every
 * value as an opaque `(type, bytes)` pair, so a thread written by one language holds values the
 * other language's serializer cannot decode. {@link PolyglotSerializer} lets a LangGraph.js saver
 * read such a thread anyway: values of a type it does not understand come back as
 * {@link ForeignValue}s (the exact type tag and bytes), and a `ForeignValue` passed back to
 * `dumpsTyped` is written byte for byte, so re-saving it does not corrupt the other language's data.
 *
 * Interrupts: LangGraph.js stores an `interrupt()` as JSON `[{ value, id }]`, which LangGraph (Python)
 * reads back as dicts, not as its `Interrupt`, so it cannot resume such a thread. With a
 * `PolyglotSerializer` (option `pythonInterrupts`, default true), `GrpcCheckpointSaver` stores the
 * interrupts in the JSON form LangGraph (Python) revives as `langgraph.types.Interrupt`
 * ({@link interruptsForPython}), and reads that form back as LangGraph.js's `{ value, id }`
 * ({@link interruptsFromPython}).
 */
import { JsonPlusSerializer, type SerializerProtocol } from "@langchain/langgraph-checkpoint";

/** A value serialized by another language's serializer, kept as its exact type tag and bytes. */
export class ForeignValue {
  readonly lg_name = "ForeignValue";
  constructor(
    /** The serializer's type tag, e.g. `"msgpack"` or `"msgpack+aes"`. */
    readonly type: string,
    /** The serialized bytes, unchanged. */
    readonly data: Uint8Array,
  ) {}

  toJSON(): { type: string; data_base64: string } {
    return { type: this.type, data_base64: Buffer.from(this.data).toString("base64") };
  }
}

export function isForeignValue(value: unknown): value is ForeignValue {
  return value instanceof ForeignValue;
}

export interface PolyglotSerializerOptions {
  /** Types the inner serializer decodes. Default `["json", "bytes"]` (LangGraph.js's JsonPlusSerializer). */
  nativeTypes?: Iterable<string>;
  /** Decode Python's `"null"` type (its `None`, stored with no bytes) as `null`. Default true. */
  decodeNull?: boolean;
  /** Store `interrupt()`s in the form LangGraph (Python) can resume (see above). Default true. */
  pythonInterrupts?: boolean;
}

/** LangGraph (Python)'s class of interrupts, as its JSON reviver names it. */
const PYTHON_INTERRUPT_ID = ["langgraph", "types", "Interrupt"];

interface PythonInterruptRecord {
  lc: 2;
  type: "constructor";
  id: string[];
  kwargs: { value: unknown; id?: unknown };
}

function isPythonInterruptRecord(item: unknown): item is PythonInterruptRecord {
  const r = item as Partial<PythonInterruptRecord> | null;
  return (
    typeof r === "object" &&
    r !== null &&
    r.lc === 2 &&
    r.type === "constructor" &&
    Array.isArray(r.id) &&
    r.id.join(".") === PYTHON_INTERRUPT_ID.join(".") &&
    typeof r.kwargs === "object" &&
    r.kwargs !== null
  );
}

/**
 * The `__interrupt__` write of LangGraph.js (`[{ value, id }]`) as LangGraph (Python)'s JSON
 * constructor records of `langgraph.types.Interrupt`. Anything else is returned unchanged.
 */
export function interruptsForPython(value: unknown): unknown {
  if (!Array.isArray(value)) return value;
  return value.map((item) => {
    if (typeof item !== "object" || item === null || !("value" in item) || isPythonInterruptRecord(item)) return item;
    const { value: v, id } = item as { value: unknown; id?: unknown };
    return { lc: 2, type: "constructor", id: PYTHON_INTERRUPT_ID, kwargs: id === undefined ? { value: v } : { value: v, id } };
  });
}

/** The inverse of {@link interruptsForPython}: Python interrupt records become `{ value, id }`. */
export function interruptsFromPython(value: unknown): unknown {
  if (!Array.isArray(value) || !value.some(isPythonInterruptRecord)) return value;
  return value.map((item) =>
    isPythonInterruptRecord(item)
      ? item.kwargs.id === undefined
        ? { value: item.kwargs.value }
        : { value: item.kwargs.value, id: item.kwargs.id }
      : item,
  );
}

/**
 * Wraps a serializer (default LangGraph.js's `JsonPlusSerializer`): native types go to it, `"null"`
 * decodes to `null`, any other type decodes to a {@link ForeignValue}; dumping a `ForeignValue`
 * returns its original type and bytes.
 */
export class PolyglotSerializer implements SerializerProtocol {
  readonly inner: SerializerProtocol;
  /** Whether the saver stores `interrupt()`s in the form LangGraph (Python) can resume. */
  readonly pythonInterrupts: boolean;
  private readonly nativeTypes: Set<string>;
  private readonly decodeNull: boolean;

  constructor(inner: SerializerProtocol = new JsonPlusSerializer(), options: PolyglotSerializerOptions = {}) {
    this.inner = inner;
    this.nativeTypes = new Set(options.nativeTypes ?? ["json", "bytes"]);
    this.decodeNull = options.decodeNull ?? true;
    this.pythonInterrupts = options.pythonInterrupts ?? true;
  }

  async dumpsTyped(data: unknown): Promise<[string, Uint8Array]> {
    if (data instanceof ForeignValue) return [data.type, data.data];
    return this.inner.dumpsTyped(data);
  }

  async loadsTyped(type: string, data: Uint8Array | string): Promise<unknown> {
    if (this.nativeTypes.has(type)) return this.inner.loadsTyped(type, data);
    if (type === "null" && this.decodeNull) return null;
    // A copy: `data` may be a view into a larger message buffer.
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : new Uint8Array(data);
    return new ForeignValue(type, bytes);
  }
}
