/**
 * Topic matching over a trie of binding-key words. `*` matches exactly one word and `#` zero
 * or more (AMQP 0-9-1 §3.1.3.3; RabbitMQ rabbit_exchange_type_topic). Matching walks the trie
 * once per message, so its cost grows with the key's length, not with the number of bindings.
 */
class TrieNode<T> {
  children = new Map<string, TrieNode<T>>();
  values = new Set<T>();
}

export class TopicTrie<T> {
  #root = new TrieNode<T>();

  add(bindingKey: string, value: T): void {
    let node = this.#root;
    for (const w of bindingKey.split('.')) {
      let next = node.children.get(w);
      if (next === undefined) {
        next = new TrieNode<T>();
        node.children.set(w, next);
      }
      node = next;
    }
    node.values.add(value);
  }

  remove(bindingKey: string, value: T): void {
    const path: TrieNode<T>[] = [this.#root];
    const words = bindingKey.split('.');
    for (const w of words) {
      const next = path[path.length - 1]!.children.get(w);
      if (next === undefined) return;
      path.push(next);
    }
    path[path.length - 1]!.values.delete(value);
    for (let i = words.length; i > 0; i--) {
      const n = path[i]!;
      if (n.values.size > 0 || n.children.size > 0) break;
      path[i - 1]!.children.delete(words[i - 1]!);
    }
  }

  match(routingKey: string, out: Set<T>): void {
    this.#walk(this.#root, routingKey.split('.'), 0, out);
  }

  #walk(node: TrieNode<T>, words: string[], i: number, out: Set<T>): void {
    const hash = node.children.get('#');
    if (hash !== undefined) {
      // '#' swallows zero or more words: try every remaining suffix.
      for (let j = i; j <= words.length; j++) this.#walk(hash, words, j, out);
    }
    if (i === words.length) {
      for (const v of node.values) out.add(v);
      return;
    }
    const exact = node.children.get(words[i]!);
    if (exact !== undefined) this.#walk(exact, words, i + 1, out);
    const star = node.children.get('*');
    if (star !== undefined) this.#walk(star, words, i + 1, out);
  }
}
