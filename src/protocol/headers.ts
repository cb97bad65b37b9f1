/** One value of a request header Node parsed: the first one when it came more than once, '' when absent. */
export function headerValue(v: string | string[] | undefined): string {
  return v === undefined ? '' : Array.isArray(v) ? (v[0] ?? '') : v;
}
