//! Exact-term queries that know when a term is in every document of a segment (the product of
//! a one-product index, the platform of a one-platform segment): there they match every
//! document without reading the posting list, and an intersection drops them altogether.

use tantivy::query::{AllScorer, EnableScoring, Explanation, Query, Scorer, TermQuery, Weight};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, Score, SegmentReader, Term};

/// Documents whose exact field holds `term`.
pub fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(WholeSegmentTerm(TermQuery::new(
        term,
        IndexRecordOption::Basic,
    )))
}

#[derive(Debug, Clone)]
struct WholeSegmentTerm(TermQuery);

impl Query for WholeSegmentTerm {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(WholeSegmentWeight {
            term: self.0.term().clone(),
            inner: self.0.weight(scoring)?,
        }))
    }
}

struct WholeSegmentWeight {
    term: Term,
    inner: Box<dyn Weight>,
}

impl Weight for WholeSegmentWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let postings = reader.inverted_index(self.term.field())?;
        if postings.doc_freq(&self.term)? == reader.max_doc() {
            return Ok(Box::new(AllScorer::new(reader.max_doc())));
        }
        self.inner.scorer(reader, boost)
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.inner.explain(reader, doc)
    }
}
