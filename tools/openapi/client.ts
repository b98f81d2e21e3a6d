// A small typed client over the types openapi-typescript generates from
// docs/openapi.yaml (gen/api.ts). make check-openapi compiles it under
// tsc --strict: a response field the document does not mark required would
// be `T | undefined` and fail the assignments below.
import type { components, paths } from "./gen/api";

type Schemas = components["schemas"];
export type Correlation = Schemas["Correlation"];
export type Registration = Schemas["Registration"];
export type DeliverResult = Schemas["DeliverResult"];
export type Page = Schemas["Page"];
export type Stats = Schemas["Stats"];
export type ApiError = Schemas["Error"];

type JSONOf<R> = R extends { content: { "application/json": infer T } } ? T : never;
type RegisterCreated = JSONOf<paths["/v1/correlations"]["post"]["responses"][201]>;
type ListOK = JSONOf<paths["/v1/correlations"]["get"]["responses"][200]>;

export class Client {
  constructor(private base: string, private token?: string) {}

  private async req<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
    const res = await fetch(this.base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json: unknown = await res.json();
    if (!res.ok && res.status !== 202 && res.status !== 409) {
      const e = json as ApiError;
      throw new Error(`${e.error.code}: ${e.error.message}${e.error.field ? ` (${e.error.field})` : ""}`);
    }
    return json as T;
  }

  register(r: Registration): Promise<RegisterCreated> {
    return this.req("POST", "/v1/correlations", r);
  }

  list(namespace = "default"): Promise<ListOK> {
    return this.req("GET", `/v1/correlations?namespace=${encodeURIComponent(namespace)}`);
  }

  reply(id: string, body: Schemas["Reply"]): Promise<DeliverResult> {
    return this.req("POST", `/v1/correlations/${encodeURIComponent(id)}/replies`, body);
  }

  stats(): Promise<Stats> {
    return this.req("GET", "/v1/stats?namespace=*");
  }
}

// Required fields are plain types, not `| undefined`.
export function describe(c: Correlation): string {
  const id: string = c.id;
  const ns: string = c.namespace;
  const state: Schemas["State"] = c.state;
  const version: number = c.version;
  const dispatch: string = c.dispatch.state;
  const attempts: number = c.dispatch.attempts;
  const decided: string = c.outcome ? `${c.outcome.state} at ${c.outcome.at}` : "pending";
  return `${ns}/${id} v${version} ${state} (${decided}; dispatch ${dispatch} x${attempts}; ${c.reply_count} replies)`;
}

export function firstPage(p: Page): string[] {
  const next: string | undefined = p.next_cursor;
  return p.items.map(describe).concat(next ? [`next: ${next}`] : []);
}

export function pending(s: Stats): number {
  return s.total.states["pending"] ?? 0;
}

export function status(d: DeliverResult): string {
  return d.correlation ? `${d.status}: ${describe(d.correlation)}` : d.status;
}
