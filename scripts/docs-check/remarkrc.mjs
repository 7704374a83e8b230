// Used by scripts/check-docs.sh: only the link check, nothing else of remark's defaults.
// repository: false -> no hosted-Git URL is recognised as local, so every http(s) link is
// left alone (nothing is fetched); relative links and #headings are checked on disk.
import validateLinks from 'remark-validate-links'

export default {
  plugins: [[validateLinks, {repository: false, root: process.env.DOCS_CHECK_ROOT}]]
}
