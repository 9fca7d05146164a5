#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb (quarto, which nbdev_readme needs, is not available everywhere).
`python scripts/make_readme.py` writes it; `--check` exits 1 when README.md is out of step."""
import sys, json
from pathlib import Path
root = Path(__file__).resolve().parents[1]

def render()->str:
    nb = json.loads((root/'nbs'/'index.ipynb').read_text())
    parts = ['<!-- generated from nbs/index.ipynb by scripts/make_readme.py: edit the notebook -->']
    for c in nb['cells']:
        src = ''.join(c['source']).strip()
        if not src: continue
        if c['cell_type'] == 'markdown': parts.append(src)
        elif not src.startswith('#| hide'): parts.append(f'```python\n{src}\n```')
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv:
        ok = (root/'README.md').read_text() == text
        print('README.md is in step with nbs/index.ipynb' if ok else 'README.md differs from nbs/index.ipynb: run scripts/make_readme.py')
        sys.exit(0 if ok else 1)
    (root/'README.md').write_text(text)
