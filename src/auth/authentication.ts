import type { ClientInfo, Credentials, MaybePromise } from '../hooks/types.js';
import type { LoginThrottle } from './login-throttle.js';
import type { PasswordFile } from './password-file.js';

/**
 * The built-in login check, before any `authenticate` hook: the password file (when configured)
 * and whether anonymous clients are let in. A refusal is answered late when the address keeps
 * failing, which makes guessing slow without holding anything per attempt but a timer.
 */
export class Authentication {
  constructor(
    private readonly passwords: PasswordFile | undefined,
    private readonly allowAnonymous: boolean,
    private readonly throttle: LoginThrottle,
  ) {}

  /**
   * `allowAnonymous`: the listener's own policy, over the broker's. `hooked`: an authenticate hook
   * decides after this check, so a user name it has not vouched for yet may pass here.
   */
  check(client: ClientInfo, credentials: Credentials, certified: boolean, hooked: boolean, allowAnonymous?: boolean): MaybePromise<boolean> {
    if (this.accepts(credentials, certified, hooked, allowAnonymous ?? this.allowAnonymous)) {
      this.throttle.succeeded(client.remoteAddress);
      return true;
    }
    const wait = this.throttle.failed(client.remoteAddress);
    return new Promise((resolve) => setTimeout(() => resolve(false), wait).unref());
  }

  private accepts(credentials: Credentials, certified: boolean, hooked: boolean, allowAnonymous: boolean): boolean {
    // a verified client certificate is the identity (its CN is the user name)
    if (certified) return true;
    if (credentials.username === undefined) return allowAnonymous;
    if (this.passwords !== undefined) return this.passwords.verify(credentials.username, credentials.password);
    // with nothing to check it against, a user name is anyone's to claim: it lets in no more
    // than anonymous access does, unless the hook checks it
    return allowAnonymous || hooked;
  }
}
