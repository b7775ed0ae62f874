// The acr a sign-in asserts follows from how it was made (its RFC 8176 amr), which the methods define.

/** acr values Tsunagi asserts. One possession factor (a code, an upstream sign-in) is LoA 1; a passkey is phishing-resistant. */
export const ACR = {
  singleFactor: 'urn:tsunagi:loa:1',
  phishingResistant: 'phr',
} as const;
export const ACR_VALUES = [ACR.singleFactor, ACR.phishingResistant];

export function acrFor(amr: string[]): string {
  return amr.includes('hwk') || amr.includes('swk') ? ACR.phishingResistant : ACR.singleFactor;
}
